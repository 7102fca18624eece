//! CPU and memory of the server processes, sampled from /proc while a phase runs.
//!
//! Processes are selected by pid or by name (the `comm`, or the file name of
//! argv[0]); all processes of one name are summed, since Postgres serves each
//! connection from its own backend. The runner samples itself too, as
//! `loadtest`, to show whether it was the bottleneck.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which processes to sample.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Explicit pids.
    pub pids: Vec<u32>,
    /// Process names.
    pub names: Vec<String>,
}

/// The usage of one named group of processes during a phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The name (or `pid N`).
    pub name: String,
    /// Mean CPU, in percent of one core.
    pub cpu_mean_pct: f64,
    /// Highest one-interval CPU, in percent of one core.
    pub cpu_max_pct: f64,
    /// Highest summed resident memory, in MiB.
    pub rss_max_mib: f64,
    /// CPU of each sampling interval: seconds after the sampler started, percent of one core.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<CpuPoint>,
}

/// The CPU of one group over one sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuPoint {
    /// End of the interval, in seconds after the sampler started.
    pub at_s: f64,
    /// Mean CPU over the interval, in percent of one core.
    pub cpu_pct: f64,
}

/// A running sampler; [`Sampler::stop`] returns what it saw.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Usage>>,
}

impl Sampler {
    /// Starts sampling every `every`.
    pub fn start(selector: Selector, every: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(sample(selector, every, stopped));
        Self { stop, task }
    }

    /// Stops and summarises.
    pub async fn stop(self) -> Vec<Usage> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

#[derive(Default)]
struct Group {
    cpu_sum_pct: f64,
    intervals: u32,
    cpu_max_pct: f64,
    rss_max: u64,
    timeline: Vec<CpuPoint>,
}

async fn sample(selector: Selector, every: Duration, mut stopped: watch::Receiver<bool>) -> Vec<Usage> {
    let ticks = clock_ticks();
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut last: HashMap<u32, u64> = HashMap::new();
    let started = Instant::now();
    let mut last_at = started;
    let mut first = true;
    loop {
        let now = Instant::now();
        let elapsed = (now - last_at).as_secs_f64().max(1e-3);
        let mut cpu: HashMap<String, u64> = HashMap::new();
        let mut rss: HashMap<String, u64> = HashMap::new();
        let mut seen = HashMap::new();
        for (pid, group) in matching(&selector) {
            let Some(stat) = read_stat(pid) else { continue };
            let delta = last.get(&pid).map_or(0, |prev| stat.cpu_ticks.saturating_sub(*prev));
            *cpu.entry(group.clone()).or_default() += delta;
            *rss.entry(group.clone()).or_default() += stat.rss_bytes;
            groups.entry(group).or_default();
            seen.insert(pid, stat.cpu_ticks);
        }
        for (name, g) in groups.iter_mut() {
            if !first {
                let pct = cpu.get(name).copied().unwrap_or(0) as f64 / ticks / elapsed * 100.0;
                g.cpu_sum_pct += pct;
                g.intervals += 1;
                g.cpu_max_pct = g.cpu_max_pct.max(pct);
                g.timeline.push(CpuPoint { at_s: (now - started).as_secs_f64(), cpu_pct: pct });
            }
            g.rss_max = g.rss_max.max(rss.get(name).copied().unwrap_or(0));
        }
        (last, last_at, first) = (seen, now, false);
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    let mut out: Vec<Usage> = groups
        .into_iter()
        .map(|(name, g)| Usage {
            name,
            cpu_mean_pct: if g.intervals == 0 { 0.0 } else { g.cpu_sum_pct / g.intervals as f64 },
            cpu_max_pct: g.cpu_max_pct,
            rss_max_mib: g.rss_max as f64 / (1024.0 * 1024.0),
            timeline: g.timeline,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every selected pid with its group name; the runner itself is `loadtest`.
fn matching(selector: &Selector) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut out: Vec<(u32, String)> = selector.pids.iter().map(|p| (*p, format!("pid {p}"))).collect();
    out.push((me, "loadtest".to_owned()));
    if selector.names.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Some(name) = process_names(pid).into_iter().find(|n| selector.names.contains(n)) {
            out.push((pid, name));
        }
    }
    out
}

/// The `comm` and argv[0]'s file name of `pid`.
fn process_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        names.push(comm.trim().to_owned());
    }
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        if let Some(base) = argv0.split_whitespace().next().and_then(|a| a.rsplit('/').next()) {
            names.push(base.to_owned());
        }
    }
    names
}

struct Stat {
    cpu_ticks: u64,
    rss_bytes: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat, page_size())
}

/// utime + stime (fields 14 and 15) and rss in pages (field 24) of a
/// `/proc/PID/stat` line; fields are counted after the `(comm)`, which may hold spaces.
fn parse_stat(stat: &str, page: u64) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(Stat { cpu_ticks: utime + stime, rss_bytes: rss_pages * page })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_comm() {
        let line = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 100 123456789 2048 18446744073709551615";
        let s = parse_stat(line, 4096).unwrap();
        assert_eq!(s.cpu_ticks, 300);
        assert_eq!(s.rss_bytes, 2048 * 4096);
    }

    // The sampler runs on a worker thread while the test thread spins; on a current-thread
    // runtime the spin would hold the sampler off, leaving it one sample (and no interval)
    // whenever the machine is busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn samples_its_own_process() {
        let sampler = Sampler::start(Selector::default(), Duration::from_millis(20));
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(120) {
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        // Several intervals more, so a starved sampler still closes at least one.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let usage = sampler.stop().await;
        let me = usage.iter().find(|u| u.name == "loadtest").expect("the runner samples itself");
        assert!(me.rss_max_mib > 1.0, "{me:?}");
        assert!(!me.timeline.is_empty(), "one CPU point per interval after the first: {me:?}");
        assert!(me.timeline.windows(2).all(|w| w[0].at_s < w[1].at_s), "{me:?}");
        let peak = me.timeline.iter().map(|p| p.cpu_pct).fold(0.0, f64::max);
        assert_eq!(peak, me.cpu_max_pct, "the timeline holds the peak interval");
    }
}
