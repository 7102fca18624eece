//! The configuration every binary shares: one typed struct, from flags or env.
//!
//! Binaries `#[command(flatten)]` it into their own `clap::Parser`, so `--help`
//! documents every variable of the contract, and a missing required value fails
//! at start with clap's message rather than later at first use.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A secret value (a URL with a password, a signing key) that never prints: `secrecy`'s
/// `SecretString` (zeroed when dropped), read only through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    /// The secret itself; call this only where it is used.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.into()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.into())
    }
}

/// The environment variables of `CONTRACT.md`, the same for every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// NATS server URL (JetStream enabled); a cluster's nodes separated by commas.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream replicas of the streams this binary creates (1 on a single node, 3 on a
    /// 3-node cluster so that a 202 survives the loss of a node).
    #[arg(long, env = "NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,
    /// Prefix of the stream, subject and consumer names, so that several deployments share
    /// one NATS (the operator sets `<namespace>_<name>`). Empty: the contract names
    /// (ORDERS, USERS, DEAD_LETTERS; `orders.<shard>`…).
    #[arg(long, env = "NATS_STREAM_PREFIX", default_value = "", value_parser = parse_stream_names)]
    pub nats_stream_prefix: tps_contract::subject::StreamNames,
    /// A NATS credentials file (`.creds`: user JWT and NKey seed), for a NATS that wants
    /// them; the operator mounts `nats.credentialsSecretRef` and sets this.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// Create the streams and shard consumers when missing, with `NATS_REPLICAS` and the
    /// default limits. The operator sets false: it owns the streams and their limits, and
    /// the binaries only use what it made.
    #[arg(long, env = "NATS_STREAMS_CREATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub nats_streams_create: bool,
    /// Postgres URL, e.g. postgres://user:pass@host:5432/db; over TLS add
    /// `?sslmode=verify-full` (and `&sslrootcert=/path/ca.pem` for a private CA).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Redis URL: `redis://` in the clear, `rediss://` over TLS (verified against the
    /// Mozilla roots, or `REDIS_CA_CERT`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// PEM file of the CA(s) that sign the Redis server's certificate, for a `rediss://`
    /// Redis whose certificate a public root does not sign (it replaces those roots).
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,
    /// HS256 key that signs bearer tokens (required by the api).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<Secret>,
    /// Address the HTTP API listens on.
    #[arg(long, env = "API_LISTEN", default_value = "0.0.0.0:8080")]
    pub api_listen: SocketAddr,
    /// Address the Prometheus `/metrics` endpoint listens on.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Number of shards of each command stream; must match across all pods.
    #[arg(long, env = "SHARDS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
}

impl CommonConfig {
    /// NATS connect options with the credentials of `NATS_CREDS`, when set.
    pub async fn nats_options(&self) -> std::io::Result<async_nats::ConnectOptions> {
        let options = async_nats::ConnectOptions::new();
        match &self.nats_creds {
            Some(path) => options.credentials_file(path).await,
            None => Ok(options),
        }
    }

    /// The NATS servers of `NATS_URL`: one URL, or a cluster's nodes separated by commas.
    /// The client connects to any of them and moves to another when one is lost.
    pub fn nats_servers(&self) -> Vec<String> {
        nats_servers(&self.nats_url)
    }
}

fn parse_stream_names(
    prefix: &str,
) -> Result<tps_contract::subject::StreamNames, tps_contract::subject::InvalidPrefix> {
    tps_contract::subject::StreamNames::with_prefix(prefix)
}

/// Splits a comma-separated list of NATS URLs (blank entries ignored).
pub fn nats_servers(url: &str) -> Vec<String> {
    url.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonConfig,
    }

    #[test]
    fn flags_parse_and_secrets_do_not_print() {
        let cli = Cli::try_parse_from([
            "x",
            "--database-url",
            "postgres://u:hunter2@h/db",
            "--auth-jwt-secret",
            "s3cret",
            "--shards",
            "4",
        ])
        .unwrap();
        assert_eq!(cli.common.shards, 4);
        assert_eq!(cli.common.database_url.expose(), "postgres://u:hunter2@h/db");
        let printed = format!("{:?}", cli.common);
        assert!(!printed.contains("hunter2") && !printed.contains("s3cret"), "{printed}");
    }

    #[test]
    fn nats_url_lists_a_cluster_and_replicas_default_to_one() {
        let cli = Cli::try_parse_from([
            "x",
            "--database-url",
            "u",
            "--nats-url",
            "nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://127.0.0.1:4224",
        ])
        .unwrap();
        assert_eq!(
            cli.common.nats_servers(),
            ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
        );
        assert_eq!(cli.common.nats_replicas, 1);
        assert_eq!(nats_servers("nats://h:1"), ["nats://h:1"]);
        let three = Cli::try_parse_from(["x", "--database-url", "u", "--nats-replicas", "3"]).unwrap();
        assert_eq!(three.common.nats_replicas, 3);
        assert!(Cli::try_parse_from(["x", "--database-url", "u", "--nats-replicas", "0"]).is_err());
    }

    #[test]
    fn stream_names_default_to_the_contract_and_take_a_prefix() {
        let local = Cli::try_parse_from(["x", "--database-url", "u"]).unwrap();
        assert_eq!(local.common.nats_stream_prefix.stream("ORDERS"), "ORDERS");
        assert!(local.common.nats_streams_create);
        let managed = Cli::try_parse_from([
            "x",
            "--database-url",
            "u",
            "--nats-stream-prefix",
            "shop_a",
            "--nats-streams-create",
            "false",
        ])
        .unwrap();
        assert_eq!(managed.common.nats_stream_prefix.stream("ORDERS"), "shop_a_ORDERS");
        assert!(!managed.common.nats_streams_create);
        assert!(Cli::try_parse_from(["x", "--database-url", "u", "--nats-stream-prefix", "a.b"]).is_err());
    }

    #[test]
    fn shard_count_is_bounded() {
        assert!(Cli::try_parse_from(["x", "--database-url", "u", "--shards", "0"]).is_err());
    }
}
