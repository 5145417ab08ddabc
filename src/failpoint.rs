//! Named crash points for crash-recovery tests (debug and test builds only).
//!
//! A test runs ferry with `FERRY_FAILPOINTS=apply.after_target_write` (a comma-separated
//! list) and ferry aborts, like `kill -9`, the first time it reaches that point; the test
//! then restarts it and checks nothing was lost or applied twice in a harmful way. Abort
//! rather than exit: no destructors, no flushes, exactly what a real crash leaves behind.
//! The variable is read once, so an unset list costs one atomic load per call.

use std::sync::OnceLock;

/// The failpoints enabled by `FERRY_FAILPOINTS`: in test and debug builds only. A release
/// build (what is deployed) ignores the variable, saying so once, so an environment variable
/// can never make a production daemon abort or fail on purpose.
fn enabled() -> &'static [String] {
    static ENABLED: OnceLock<Vec<String>> = OnceLock::new();
    ENABLED.get_or_init(|| {
        let list = std::env::var("FERRY_FAILPOINTS").map(|v| parse(&v)).unwrap_or_default();
        if cfg!(debug_assertions) {
            list
        } else {
            if !list.is_empty() {
                tracing::warn!("FERRY_FAILPOINTS is ignored: failpoints exist in test builds only");
            }
            Vec::new()
        }
    })
}

fn parse(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Aborts the process if the failpoint `name` is enabled.
pub fn hit(name: &str) {
    if enabled().iter().any(|n| n == name) {
        tracing::error!(failpoint = name, "failpoint hit: aborting");
        eprintln!("ferry: failpoint {name} hit: aborting");
        std::process::abort();
    }
}

/// True the first time the failpoint `name` is reached when it is enabled: the caller fails
/// the operation with an ordinary error (no crash), to test abort paths. Later calls in the
/// same process return false, so a retry can succeed.
pub fn fail_once(name: &str) -> bool {
    static FIRED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if !enabled().iter().any(|n| n == name) {
        return false;
    }
    let mut fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
    if fired.iter().any(|n| n == name) {
        return false;
    }
    fired.push(name.to_string());
    tracing::warn!(failpoint = name, "failpoint hit: failing this operation");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comma_separated_names() {
        assert_eq!(parse(" a.b , ,c"), vec!["a.b".to_string(), "c".to_string()]);
        assert!(parse("").is_empty());
    }

    #[test]
    fn disabled_failpoints_do_nothing() {
        // The test runner does not set FERRY_FAILPOINTS to this name.
        hit("failpoint.test.never_enabled");
    }
}
