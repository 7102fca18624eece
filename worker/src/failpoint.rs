//! Failpoints for crash tests, compiled in always and read once at start.
//!
//! `TPS_FAILPOINT=crash-after-commit` aborts the process right after the first
//! settling transaction commits and before its messages are acked: the window in
//! which a crash must change nothing when the messages are redelivered.

/// The env variable that arms a failpoint.
pub const FAILPOINT_ENV: &str = "TPS_FAILPOINT";

/// Which failpoint, if any, is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Failpoint {
    /// Normal operation.
    #[default]
    None,
    /// `std::process::abort()` after a commit, before the ack.
    CrashAfterCommit,
}

impl Failpoint {
    /// Reads `TPS_FAILPOINT`; an unknown value is ignored with a warning.
    pub fn from_env() -> Self {
        match std::env::var(FAILPOINT_ENV).as_deref() {
            Ok("crash-after-commit") => Failpoint::CrashAfterCommit,
            Ok("") | Err(_) => Failpoint::None,
            Ok(other) => {
                tracing::warn!(failpoint = other, "unknown failpoint ignored");
                Failpoint::None
            }
        }
    }

    /// Called between commit and ack.
    pub fn after_commit(self) {
        if self == Failpoint::CrashAfterCommit {
            tracing::error!("failpoint crash-after-commit: aborting before the ack");
            std::process::abort();
        }
    }
}
