//! Which database errors are worth waiting out, and how long to wait.
//!
//! A transient error (Postgres down, restarting, overloaded, a serialization
//! failure) says nothing about the messages: the batch is kept and retried, and
//! no delivery is burnt. Anything else may be the data's fault and is isolated.

use std::time::Duration;

/// Whether retrying the same transaction later may succeed.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention,
/// shutdown, statement timeout), plus serialization failure, deadlock and lock timeout.
fn transient_sqlstate(code: &str) -> bool {
    matches!(&code[..2.min(code.len())], "08" | "53" | "57") || matches!(code, "40001" | "40P01" | "55P03")
}

/// Exponential backoff from 100 ms, capped at 3 s so recovery is noticed quickly.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(10))).min(Duration::from_secs(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_backoff() {
        assert!(transient_sqlstate("08006") && transient_sqlstate("57P01") && transient_sqlstate("40001"));
        assert!(!transient_sqlstate("22021") && !transient_sqlstate("23505"));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(20), Duration::from_secs(3));
    }
}
