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
    /// Never settle: hold the first pulled batch for ever (until killed).
    StallBeforeSettle,
}

impl Failpoint {
    /// Reads `TPS_FAILPOINT`; an unknown value is ignored with a warning.
    pub fn from_env() -> Self {
        match std::env::var(FAILPOINT_ENV).as_deref() {
            Ok("crash-after-commit") => Failpoint::CrashAfterCommit,
            Ok("stall-before-settle") => Failpoint::StallBeforeSettle,
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

    /// Called with a pulled batch, before it is settled.
    pub async fn before_settle(self, size: usize) {
        if self == Failpoint::StallBeforeSettle {
            tracing::error!(size, "failpoint stall-before-settle: holding the batch until killed");
            std::future::pending::<()>().await;
        }
    }
}
