//! The job's durable state (sled, under `state_dir/state`): what was created, how far each
//! bulk copy got, the stream's start positions, the job's phase.
//!
//! Values are JSON under readable keys (`snapshot/<collection>/<unit>`; every format is in
//! [`keys`]), so an operator can inspect them. Every write is flushed before the caller moves on: state is small and
//! written once per batch, and "continue where it left off" must hold after kill -9.

pub mod keys;

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open job state at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("job state I/O on key {key:?}: {source}")]
    Io { key: String, source: sled::Error },
    #[error("job state key {key:?} holds unreadable data: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

impl StateError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Typed access to the state tree.
#[derive(Clone)]
pub struct StateStore {
    db: sled::Db,
}

impl StateStore {
    /// Opens (or creates, with `state_dir` itself) the state under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir.join("state");
        // Owner-only: the directory holds the generated control token and the job's state.
        // A directory that already exists keeps the permissions its owner gave it.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir).map_err(|e| StateError::Open {
            path: state_dir.display().to_string(),
            source: sled::Error::Io(e),
        })?;
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(Some(200))
            .open()
            .map_err(|source| StateError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(StateStore { db })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        let raw = self.db.get(key).map_err(|source| StateError::Io {
            key: key.into(),
            source,
        })?;
        raw.map(|v| {
            serde_json::from_slice(&v).map_err(|source| StateError::Corrupt {
                key: key.into(),
                source,
            })
        })
        .transpose()
    }

    /// Writes and flushes a value.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StateError::Corrupt {
            key: key.into(),
            source,
        })?;
        let io = |source| StateError::Io {
            key: key.into(),
            source,
        };
        self.db.insert(key, bytes).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            key: key.into(),
            source,
        };
        self.db.remove(key).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    /// All `(key, value)` under a prefix.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, StateError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(prefix) {
            let (k, v) = item.map_err(|source| StateError::Io {
                key: prefix.into(),
                source,
            })?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let value = serde_json::from_slice(&v).map_err(|source| StateError::Corrupt {
                key: key.clone(),
                source,
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// The underlying database, for modules that keep their own trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            s.put("a/1", &5u64).unwrap();
            s.put("a/2", &7u64).unwrap();
            s.put("b/1", &9u64).unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.get::<u64>("a/1").unwrap(), Some(5));
        let a: Vec<(String, u64)> = s.scan("a/").unwrap();
        assert_eq!(a, vec![("a/1".into(), 5), ("a/2".into(), 7)]);
        s.remove("a/1").unwrap();
        assert_eq!(s.get::<u64>("a/1").unwrap(), None);
    }

    #[test]
    fn a_new_state_dir_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("new/state-dir");
        StateStore::open(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mode:o}");
    }
}
