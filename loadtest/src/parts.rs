//! One phase spread over several processes, for more simultaneous connections than one
//! process may hold.
//!
//! A process may open as many files as its open-file limit allows (20,000 on some hosts,
//! without the privilege to raise it), and each connection is one. So `signup-burst
//! --requests 100000` there runs as parts: children of this same binary, started with the
//! same arguments plus `--part K/N`, each holding its share of the connections from a
//! source address of its own (127.0.0.x on loopback, so that no two parts compete for
//! ephemeral ports). Every part opens its connections, prints `ready`, and waits for `go`
//! on its stdin, so that all of them start together; then it prints what it measured as
//! one JSON line and exits. The parent merges the parts into one [`PhaseRun`], as if one
//! process had sent everything.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::error::{Error, Result};
use crate::http::{Answer, Call};
use crate::latency::Sample;
use crate::load::{Gate, PhaseRun, Workload};

/// Files a process keeps for itself beside its connections (servers' logs, /proc reads, …).
const MARGIN: u64 = 1_000;

/// How long a part may take to open its connections.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Part `index` of `count` (`--part K/N`, K counted from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Part {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl FromStr for Part {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or("a part is K/N, e.g. 0/5")?;
        let index: u32 = k.parse().map_err(|_| format!("bad part index {k:?}"))?;
        let count: u32 = n.parse().map_err(|_| format!("bad part count {n:?}"))?;
        if count == 0 || index >= count {
            return Err(format!("part {index}/{count}: K must be below N"));
        }
        Ok(Self { index, count })
    }
}

impl Part {
    /// Requests of this part when the phase has `total`: every `count`th from `index`.
    pub fn requests(&self, total: u64) -> u64 {
        let (k, n) = (u64::from(self.index), u64::from(self.count));
        if total <= k { 0 } else { (total - k).div_ceil(n) }
    }

    /// The phase's request number of this part's request `j`.
    pub fn global(&self, j: u64) -> u64 {
        j * u64::from(self.count) + u64::from(self.index)
    }

    /// The loopback source addresses of this part for `connections` of its own: one per
    /// 25,000 (each address has about 28,000 ephemeral ports towards one server port), in a
    /// range of its own from 127.0.0.11, so that no two parts compete for ports. Empty when the
    /// target is not IPv4 loopback (the system then picks the source).
    pub fn sources(&self, connections: u64, loopback_v4: bool) -> Vec<IpAddr> {
        if !loopback_v4 {
            return Vec::new();
        }
        let per_part = connections.div_ceil(25_000).max(1);
        let first = 11 + u64::from(self.index) * per_part;
        (first..first + per_part)
            .filter(|last| *last <= 254)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
            .collect()
    }
}

/// Parts needed for `connections` when a process may hold `limit` files, or at most
/// `per_process` connections when that is set (not 0); 1 when one process will do.
pub fn needed(connections: u64, limit: u64, per_process: u64) -> u32 {
    let fits = limit.saturating_sub(MARGIN).max(1);
    let per_process = if per_process == 0 { fits } else { per_process.min(fits) };
    connections.div_ceil(per_process).max(1) as u32
}

/// The workload of one part: its request `j` is the phase's request [`Part::global`]`(j)`.
pub struct Strided<W> {
    inner: Arc<W>,
    part: Part,
}

impl<W> Strided<W> {
    /// `part`'s share of `inner`.
    pub fn new(inner: Arc<W>, part: Part) -> Self {
        Self { inner, part }
    }
}

impl<W: Workload> Workload for Strided<W> {
    type Note = W::Note;

    fn call(&self, j: u64) -> Call {
        self.inner.call(self.part.global(j))
    }

    fn note(&self, j: u64, answer: &Answer) -> Option<W::Note> {
        self.inner.note(self.part.global(j), answer)
    }
}

/// In a part: prints `ready` once its connections are open, and waits for `go` on stdin.
pub fn stdin_gate() -> Gate {
    Arc::new(|| {
        Box::pin(async {
            let mut out = tokio::io::stdout();
            let _ = out.write_all(b"ready\n").await;
            let _ = out.flush().await;
            let mut line = String::new();
            let _ = BufReader::new(tokio::io::stdin()).read_line(&mut line).await;
            // Anything but `go` (the parent died: stdin closed) ends the part unsent.
            if line.trim() != "go" {
                std::process::exit(3);
            }
        })
    })
}

/// What one part measured, as it crosses the pipe to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartRun {
    /// `(at_us, latency_us, status, route)` per request, `at_us` from this part's start.
    samples: Vec<(u64, u64, u16, u8)>,
    /// The workload's notes (the phase's request numbers of the accepted ones).
    notes: Vec<u64>,
    /// The phase's request numbers that got no answer.
    unanswered: Vec<u64>,
    connect_failures: u64,
    started_unix_us: u64,
    last_sent_after_us: u64,
    elapsed_us: u64,
}

impl PartRun {
    /// `run`, of `part`.
    pub fn of(run: PhaseRun<u64>, part: Part) -> Self {
        Self {
            samples: run.samples.iter().map(|s| (s.at_us, s.latency_us, s.status, s.route)).collect(),
            notes: run.notes,
            unanswered: run.unanswered.iter().map(|j| part.global(*j)).collect(),
            connect_failures: run.connect_failures,
            started_unix_us: run.started_wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
                as u64,
            last_sent_after_us: run.last_sent_after.as_micros() as u64,
            elapsed_us: run.elapsed.as_micros() as u64,
        }
    }

    /// Prints the part's result line, for the parent.
    pub async fn emit(&self) -> Result<()> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        let mut out = tokio::io::stdout();
        out.write_all(&line).await?;
        out.flush().await?;
        Ok(())
    }
}

/// One phase as if one process had run it: the earliest start is the phase's, and every
/// part's samples are moved onto that clock.
pub fn merge(parts: Vec<PartRun>) -> PhaseRun<u64> {
    let start_us = parts.iter().map(|p| p.started_unix_us).min().unwrap_or_default();
    let mut run = PhaseRun {
        samples: Vec::with_capacity(parts.iter().map(|p| p.samples.len()).sum()),
        notes: Vec::new(),
        unanswered: Vec::new(),
        connect_failures: 0,
        started_wall: UNIX_EPOCH + Duration::from_micros(start_us),
        last_sent_after: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    for part in parts {
        let shift = part.started_unix_us - start_us;
        run.samples.extend(part.samples.into_iter().map(|(at_us, latency_us, status, route)| Sample {
            at_us: at_us + shift,
            latency_us,
            status,
            route,
        }));
        run.notes.extend(part.notes);
        run.unanswered.extend(part.unanswered);
        run.connect_failures += part.connect_failures;
        run.last_sent_after = run.last_sent_after.max(Duration::from_micros(shift + part.last_sent_after_us));
        run.elapsed = run.elapsed.max(Duration::from_micros(shift + part.elapsed_us));
    }
    run.samples.sort_unstable_by_key(|s| s.at_us);
    run
}

/// The arguments of this process for part `part`: the same, with `--part` and `--run-id`
/// set (so that every part makes the same run's requests) and without `--report`.
pub fn child_args(args: &[OsString], part: Part, run_id: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let text = arg.to_string_lossy();
        let flag = text.split_once('=').map_or(text.as_ref(), |(f, _)| f);
        if matches!(flag, "--part" | "--run-id" | "--report") {
            skip_value = !text.contains('=');
            continue;
        }
        out.push(arg.clone());
    }
    out.extend(["--part".into(), format!("{}/{}", part.index, part.count).into()]);
    out.extend(["--run-id".into(), run_id.into()]);
    out
}

/// In the parent: runs `count` parts (this binary with `args`, see [`child_args`]), starts
/// them together once all are ready, and merges what they measured. A part that is not ready
/// within 3 minutes, or has no result within `request_timeout` plus a minute after `go`,
/// fails the run (and every part is killed).
pub async fn run_children(
    args: &[OsString],
    count: u32,
    run_id: &str,
    request_timeout: Duration,
) -> Result<PhaseRun<u64>> {
    // The binary itself, unless embedded (the library in a test): then `LOADTEST_EXE`.
    let exe = match std::env::var_os("LOADTEST_EXE") {
        Some(exe) => exe.into(),
        None => std::env::current_exe()?,
    };
    let mut children = Vec::new();
    for index in 0..count {
        let part = Part { index, count };
        let mut child = tokio::process::Command::new(&exe)
            .args(child_args(args, part, run_id))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        children.push((part, child, stdin, stdout));
    }
    // Everyone connected, then everyone goes.
    for (part, _, _, stdout) in &mut children {
        let line = tokio::time::timeout(READY_TIMEOUT, stdout.next_line()).await;
        match line {
            Ok(Ok(Some(l))) if l == "ready" => {}
            other => return Err(part_failed(*part, format!("not ready: {other:?}"))),
        }
    }
    for (part, _, stdin, _) in &mut children {
        stdin.write_all(b"go\n").await.map_err(|e| part_failed(*part, e.to_string()))?;
        stdin.flush().await.map_err(|e| part_failed(*part, e.to_string()))?;
    }
    let mut runs = Vec::new();
    let deadline = tokio::time::Instant::now() + request_timeout + Duration::from_secs(60);
    for (part, mut child, _, mut stdout) in children {
        let line = tokio::time::timeout_at(deadline, stdout.next_line())
            .await
            .map_err(|_| part_failed(part, "no result in time".into()))??
            .ok_or_else(|| part_failed(part, "no result".into()))?;
        runs.push(serde_json::from_str::<PartRun>(&line)?);
        let status = child.wait().await?;
        if !status.success() {
            return Err(part_failed(part, format!("exited with {status}")));
        }
    }
    Ok(merge(runs))
}

fn part_failed(part: Part, why: String) -> Error {
    Error::Part(format!("part {}/{}: {why}", part.index, part.count))
}

/// Wall-clock now, for tests.
#[cfg(test)]
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_share_every_request_once() {
        let n = 7;
        let total = 100_003;
        let mut seen = vec![0u8; total as usize];
        for index in 0..n {
            let part = Part { index, count: n };
            for j in 0..part.requests(total) {
                seen[part.global(j) as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!(Part { index: 6, count: 7 }.requests(5), 0);
    }

    #[test]
    fn parts_needed_for_a_limit() {
        assert_eq!(needed(18_000, 20_000, 0), 1);
        assert_eq!(needed(100_000, 20_000, 0), 6);
        assert_eq!(needed(100_000, 1_048_576, 0), 1);
        assert_eq!(needed(300, 20_000, 100), 3);
        assert_eq!(needed(100_000, 20_000, 50_000), 6, "never more than the limit allows");
        assert_eq!("2/6".parse::<Part>().unwrap(), Part { index: 2, count: 6 });
        assert!("6/6".parse::<Part>().is_err());
        let (a, b) = (Part { index: 0, count: 2 }, Part { index: 1, count: 2 });
        assert_eq!(a.sources(16_000, true), [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11))]);
        assert_eq!(b.sources(16_000, true), [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12))]);
        // 50,000 connections need two addresses each, and the ranges never overlap.
        let (a, b) = (a.sources(50_000, true), b.sources(50_000, true));
        assert_eq!((a.len(), b.len()), (2, 2));
        assert!(a.iter().all(|ip| !b.contains(ip)));
        assert!(Part { index: 0, count: 1 }.sources(10, false).is_empty(), "not loopback: the system picks");
    }

    #[test]
    fn a_child_gets_its_part_and_the_run_id_and_no_report() {
        let args: Vec<OsString> =
            ["signup-burst", "--requests", "100000", "--report", "r.json", "--run-id=x", "--no-baseline"]
                .map(OsString::from)
                .to_vec();
        let child = child_args(&args, Part { index: 1, count: 6 }, "abc");
        let child: Vec<String> = child.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            child,
            ["signup-burst", "--requests", "100000", "--no-baseline", "--part", "1/6", "--run-id", "abc"]
        );
    }

    #[test]
    fn merged_parts_keep_one_clock() {
        let start = now_us();
        let part = |shift: u64, at: u64, note: u64| PartRun {
            samples: vec![(at, 10, 202, 0)],
            notes: vec![note],
            unanswered: vec![],
            connect_failures: 0,
            started_unix_us: start + shift,
            last_sent_after_us: at,
            elapsed_us: at + 10,
        };
        let run = merge(vec![part(500, 100, 1), part(0, 300, 2)]);
        assert_eq!(run.samples.iter().map(|s| s.at_us).collect::<Vec<_>>(), [300, 600]);
        assert_eq!(run.elapsed, Duration::from_micros(610));
        assert_eq!(run.notes.len(), 2);
        assert_eq!(run.started_wall, UNIX_EPOCH + Duration::from_micros(start));
    }
}
