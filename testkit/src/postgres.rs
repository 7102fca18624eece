//! A private Postgres 15 cluster, copied from a cached `initdb` template.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::User;
use sqlx::Connection;

use crate::process::{ChildProcess, free_port, scratch_dir, wait_until};
use crate::tls::TlsFiles;

/// A Postgres server on a free port, with trust auth on loopback.
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    process: ChildProcess,
    tls: Option<TlsFiles>,
}

impl Postgres {
    /// Starts a fresh cluster and waits until it accepts queries.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(false).await
    }

    /// Starts a fresh cluster that takes TLS connections only (`ssl=on`, a `hostssl`
    /// rule, plain TCP rejected), with a certificate from a throwaway CA; its URLs
    /// say `sslmode=verify-full&sslrootcert=<the CA>`.
    pub async fn start_tls() -> anyhow::Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let owner = postgres_owner()?;
        let dir = scratch_dir("pg");
        let mut extra_args: Vec<String> = Vec::new();
        let data = dir.join("data");
        let template = template(&bin, owner)?;
        run(Command::new("cp").arg("-a").arg(&template).arg(&data))?;
        let tls = if tls { Some(TlsFiles::generate(&dir.join("tls"))?) } else { None };
        if let Some(tls) = &tls {
            let hba = dir.join("pg_hba.conf");
            std::fs::write(
                &hba,
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )?;
            extra_args.extend([
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", tls.server_cert.display()),
                "-c".into(),
                format!("ssl_key_file={}", tls.server_key.display()),
                "-c".into(),
                format!("hba_file={}", hba.display()),
            ]);
        }
        if let Some((uid, gid)) = owner {
            run(Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(&dir))?;
        }
        let port = free_port();
        // Tests trade crash-safety of the OS for speed; a killed *server* still loses nothing.
        let args: Vec<String> = [
            "-D",
            &data.to_string_lossy(),
            "-p",
            &port.to_string(),
            "-k",
            &dir.to_string_lossy(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=64MB",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra_args)
        .collect();
        let process = ChildProcess::new("postgres", bin.join("postgres"), &args, dir.join("postgres.log"))
            .run_as(owner);
        let mut pg = Self { port, dir, process, tls };
        pg.start_again().await?;
        Ok(pg)
    }

    /// URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// URL of database `db` (with `sslmode=verify-full` and the CA when TLS is on).
    pub fn url_for(&self, db: &str) -> String {
        match &self.tls {
            None => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
            Some(tls) => format!(
                "postgres://postgres@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={}",
                self.port,
                tls.ca_cert.display()
            ),
        }
    }

    /// URL of database `db` without TLS (refused by a [`Postgres::start_tls`] server).
    pub fn plaintext_url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// The certificate files when TLS is on.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&self.url()).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
        Ok(self.url_for(&name))
    }

    /// (Re)starts on the same port and data; returns once queries succeed.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.start()?;
        let url = self.url();
        let result = wait_until("postgres", Duration::from_secs(30), || {
            let url = url.clone();
            async move { sqlx::PgConnection::connect(&url).await.is_ok() }
        })
        .await;
        result.with_context(|| self.process.log_tail(2000))
    }

    /// Fast shutdown (SIGINT): aborts transactions, closes connections, writes a checkpoint.
    pub fn stop(&mut self) {
        self.process.stop_with(Signal::SIGINT, Duration::from_secs(30));
    }

    /// SIGKILL the postmaster: a crash that needs recovery at the next start.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.process.stop_with(Signal::SIGQUIT, Duration::from_secs(5));
        if std::env::var_os("TPS_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The newest `/usr/lib/postgresql/<v>/bin`, or `PG_BIN`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("Postgres is not installed (apt-get install postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).context("no postgres binary under /usr/lib/postgresql")
}

/// Postgres refuses to run as root: when we are root, run it as the `postgres` user.
fn postgres_owner() -> anyhow::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")?.context("running as root needs a `postgres` user")?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// One `initdb` per machine and Postgres version, shared by every test via a copy.
fn template(bin: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = std::env::temp_dir().join("tps-testkit-cache");
    let template = root.join(format!("pg{version}-template"));
    if template.join("PG_VERSION").exists() {
        return Ok(template);
    }
    std::fs::create_dir_all(&root)?;
    let staging = root.join(format!("staging-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&staging)?;
    if let Some((uid, gid)) = owner {
        run(Command::new("chown").arg(format!("{uid}:{gid}")).arg(&staging))?;
    }
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
        .arg(&staging);
    if let Some((uid, gid)) = owner {
        use std::os::unix::process::CommandExt;
        initdb.uid(uid).gid(gid);
    }
    run(&mut initdb)?;
    // Another test may have won the race; either copy is as good.
    if std::fs::rename(&staging, &template).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(template)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
