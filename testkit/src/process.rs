//! A child process that dies with its test, and can be signalled and restarted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Returns a port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A restartable child: the command is kept so that `start` can run it again.
pub struct ChildProcess {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    run_as: Option<(u32, u32)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ChildProcess {
    /// Describes a child; nothing runs until [`ChildProcess::start`].
    pub fn new(name: &str, program: impl AsRef<Path>, args: &[String], log: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            program: program.as_ref().to_owned(),
            args: args.to_vec(),
            envs: Vec::new(),
            run_as: None,
            log,
            child: None,
        }
    }

    /// Adds environment variables for every start.
    pub fn envs(mut self, envs: impl IntoIterator<Item = (String, String)>) -> Self {
        self.envs.extend(envs);
        self
    }

    /// Runs the child as this uid/gid (Postgres refuses to run as root).
    pub fn run_as(mut self, ids: Option<(u32, u32)>) -> Self {
        self.run_as = ids;
        self
    }

    /// Spawns the child, appending its output to the log file.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        die_with_parent(&mut cmd);
        let child =
            cmd.spawn().with_context(|| format!("spawn {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the child is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal without waiting.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if let Some(pid) = self.pid() {
            kill(Pid::from_raw(pid as i32), signal)?;
        }
        Ok(())
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` and waits up to `timeout` for the exit, then SIGKILLs.
    /// Returns the exit code when the child exited by itself.
    pub fn stop_with(&mut self, signal: Signal, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The log's path, to print when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` bytes of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&text[text.len().saturating_sub(n)..]).into_owned()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Polls `probe` every 25 ms until it succeeds or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A fresh private folder for one server's data and log.
pub fn scratch_dir(kind: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tps-testkit-{}-{}-{kind}", std::process::id(), n));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
