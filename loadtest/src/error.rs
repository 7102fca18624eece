//! The one error type of the library; `main` wraps it in anyhow.

/// What can go wrong while setting up, driving or verifying a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL is not `http://host[:port]`.
    #[error("bad base URL {url}: {why}")]
    BaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        why: String,
    },
    /// A TCP connection could not be opened.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where to.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection reset, malformed answer…).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// A request was built from invalid parts.
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
    /// No answer within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// A setup or verification call got an answer it did not expect.
    #[error("{what}: unexpected status {status}: {body}")]
    Status {
        /// Which call.
        what: String,
        /// The status received.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A body did not parse.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Postgres verification failed to read.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A WebSocket could not be opened.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// A file or socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A part of a phase spread over processes failed (`crate::parts`).
    #[error("{0}")]
    Part(String),
    /// The target did not answer as the scenario needs before it starts.
    #[error("setup: {0}")]
    Setup(String),
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
