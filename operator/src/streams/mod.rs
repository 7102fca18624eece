//! JetStream provisioning: the streams and shard consumers a `ThroughputService`
//! needs, behind a small trait so that reconcile tests need no NATS.
//!
//! The stream and consumer configurations come from `tps_contract::streams`, the
//! same functions the api and worker use locally, so that what the operator
//! creates in a cluster is exactly what the binaries would create themselves.

mod jetstream;
mod plan;

use futures::future::BoxFuture;

pub use jetstream::JetStreamProvisioner;
pub use plan::{
    Credentials, OWNER_NAME_KEY, OWNER_UID_KEY, StreamOwner, StreamPlan, stream_names, stream_prefix,
};

/// Creates, updates and deletes the streams of a `ThroughputService`.
pub trait StreamProvisioner: Send + Sync {
    /// Creates or updates the streams and the durable consumer of every shard.
    fn ensure<'a>(&'a self, plan: &'a StreamPlan) -> BoxFuture<'a, Result<(), StreamsError>>;
    /// Deletes the plan owner's streams (and so their consumers); absent streams, and
    /// streams another resource owns, are left alone.
    fn delete<'a>(&'a self, plan: &'a StreamPlan) -> BoxFuture<'a, Result<(), StreamsError>>;
}

/// NATS could not be reached, or refused a stream or consumer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamsError {
    /// No connection to NATS.
    #[error("cannot reach NATS at {url}: {message}")]
    Connect {
        /// The NATS URL.
        url: String,
        /// What the client said.
        message: String,
    },
    /// The stream exists and belongs to another `ThroughputService`: it is neither
    /// updated nor deleted.
    #[error("stream {stream} belongs to {owner}; point this resource at another NATS (or account)")]
    OwnedByAnother {
        /// The stream.
        stream: String,
        /// Its owner, `<namespace>/<name> (uid …)`.
        owner: String,
    },
    /// A stream or consumer was refused.
    #[error("{object}: {message}")]
    Refused {
        /// The stream, or `stream/consumer`.
        object: String,
        /// What the server said.
        message: String,
    },
}
