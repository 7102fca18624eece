//! A throwaway certificate authority and a server certificate for `localhost` and
//! `127.0.0.1`, made with the `openssl` command, for servers that speak TLS in tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The files of a test CA and of one server certificate it signed.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM): what clients trust (`sslrootcert=`, `REDIS_CA_CERT`).
    pub ca_cert: PathBuf,
    /// The server certificate (PEM), for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// The server's private key (PEM, mode 0600).
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// Makes a new CA and server certificate in `dir` (P-256 keys, valid two days).
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let files = Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&files.ca_cert)
                .args(["-days", "2", "-subj", "/CN=tps-testkit-ca"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;
        openssl(
            Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(&files.server_key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", "/CN=localhost"]),
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&files.ca_cert)
                .arg("-CAkey")
                .arg(&ca_key)
                .args(["-CAcreateserial", "-days", "2", "-extfile"])
                .arg(&ext)
                .arg("-out")
                .arg(&files.server_cert),
        )?;
        // Postgres refuses a key that others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&files.server_key, std::fs::Permissions::from_mode(0o600))?;
        Ok(files)
    }
}

fn openssl(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().context("run openssl (apt-get install openssl)")?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
