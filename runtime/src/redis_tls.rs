//! The Redis client of every binary, from `REDIS_URL` and `REDIS_CA_CERT`.
//!
//! `redis://` is plain TCP. `rediss://` is TLS (rustls), verifying the server against
//! the Mozilla roots compiled in, or, when `REDIS_CA_CERT` names a PEM file, against
//! the CAs in that file only (a managed Redis with a private CA, or a test's own).

use std::path::Path;

use redis::{Client, ErrorKind, RedisError, RedisResult, TlsCertificates};

/// A client for `url`; with `ca_cert`, TLS trusts the CAs of that PEM file.
pub fn client(url: &str, ca_cert: Option<&Path>) -> RedisResult<Client> {
    let Some(path) = ca_cert else { return Client::open(url) };
    let pem = std::fs::read(path).map_err(|e| {
        RedisError::from((ErrorKind::InvalidClientConfig, "REDIS_CA_CERT cannot be read", e.to_string()))
    })?;
    Client::build_with_tls(url, TlsCertificates { client_tls: None, root_cert: Some(pem) })
}
