//! The operator's error type; each variant is also a metric label.

use kube::runtime::finalizer;

use crate::streams::StreamsError;
use crate::validate::InvalidSpec;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be built; the object waits for a change.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    /// The Kubernetes API refused or failed a request; retried with backoff.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// NATS refused or could not be reached while deleting streams; retried with backoff.
    #[error("streams: {0}")]
    Streams(#[from] StreamsError),
    /// A child's name is taken by an object this resource does not control; it is left
    /// untouched, and retried with backoff (until its owner deletes or renames it).
    #[error(
        "{kind} {name} exists and is not controlled by this ThroughputService; it was left untouched (delete or rename it)"
    )]
    NotOwned {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// The object cannot carry a finalizer (it has no name).
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// The `error` label of `tps_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Kube(_) => "kube",
            Error::Streams(_) => "streams",
            Error::Finalizer(_) => "finalizer",
            Error::NotOwned { .. } => "not_owned",
        }
    }

    /// Whether retrying without a change to the object could help.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::InvalidSpec(_) | Error::Finalizer(_))
    }
}

impl From<finalizer::Error<Error>> for Error {
    /// Unwraps the finalizer helper's error so the error policy sees the cause.
    fn from(e: finalizer::Error<Error>) -> Self {
        match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
