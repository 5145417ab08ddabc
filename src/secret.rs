//! Secrets (passwords, tokens) in a wrapper that never prints its content.
//!
//! `Debug` and `Display` both show `***`, so a secret inside a config struct, an error or a
//! log line cannot leak by formatting. The value is reachable only through [`Secret::expose`].

use std::fmt;

/// A password or token. Formatting never reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that has to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_reveals_the_value() {
        let s = Secret::new("root:Milvus");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("Milvus"));
        assert_eq!(s.expose(), "root:Milvus");
    }
}
