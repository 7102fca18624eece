//! The load driver: runs one phase of a workload over a fixed set of
//! connections, in the closed or the open model, and keeps every sample.
//!
//! Workers share nothing but an atomic request counter. Each opens its
//! connection before the phase clock starts (all of them wait at a barrier),
//! then takes the next request index until none is left. In the open model a
//! worker sleeps until the index's intended time; a busy worker simply takes
//! its next index late, and that lateness is part of the latency.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use indicatif::ProgressBar;
use tokio::sync::{Barrier, OnceCell, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::{Answer, Call, Conn, Target};
use crate::latency::{Sample, TIMED_OUT, TRANSPORT_ERROR};
use crate::schedule::{Model, Schedule};

/// What one phase sends.
pub trait Workload: Send + Sync + 'static {
    /// What the scenario keeps from an answer (an accepted order, say).
    type Note: Send + 'static;
    /// Request number `i`.
    fn call(&self, i: u64) -> Call;
    /// Looks at the answer to request `i`.
    fn note(&self, i: u64, answer: &Answer) -> Option<Self::Note>;
}

/// How one phase offers its load.
#[derive(Clone)]
pub struct Plan {
    /// Requests in the phase.
    pub requests: u64,
    /// Connections (workers).
    pub connections: usize,
    /// Closed or open model.
    pub model: Model,
    /// Give up on one answer after this long.
    pub request_timeout: Duration,
    /// Source addresses to spread connections over (empty: let the OS choose).
    pub source_ips: Vec<IpAddr>,
    /// Connections being opened at once before the start.
    pub connect_concurrency: usize,
    /// Awaited once every connection is open, before the clock starts: how one part of a
    /// phase spread over several processes waits for the others (`crate::parts`).
    pub gate: Option<Gate>,
}

/// See [`Plan::gate`].
pub type Gate = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Everything one phase measured.
#[derive(Debug)]
pub struct PhaseRun<N> {
    /// One sample per request.
    pub samples: Vec<Sample>,
    /// The workload's notes, in no particular order.
    pub notes: Vec<N>,
    /// Indices of requests that got no HTTP answer (their outcome is unknown).
    pub unanswered: Vec<u64>,
    /// Workers whose connection could not be opened before the start.
    pub connect_failures: u64,
    /// Wall-clock time of the phase start.
    pub started_wall: SystemTime,
    /// From the start to the last request sent.
    pub last_sent_after: Duration,
    /// From the start to the last answer.
    pub elapsed: Duration,
}

impl<N> PhaseRun<N> {
    /// Wall-clock time of the last request sent.
    pub fn last_sent_wall(&self) -> SystemTime {
        self.started_wall + self.last_sent_after
    }
}

struct WorkerRun<N> {
    samples: Vec<Sample>,
    notes: Vec<N>,
    unanswered: Vec<u64>,
    connect_failed: bool,
    last_sent: Option<Instant>,
}

struct Shared<W> {
    target: Arc<Target>,
    plan: Plan,
    workload: Arc<W>,
    next: AtomicU64,
    barrier: Barrier,
    connecting: Semaphore,
    start: OnceCell<(Instant, SystemTime)>,
    progress: ProgressBar,
}

/// Runs one phase and returns its samples once every request is answered or timed out.
pub async fn run<W: Workload>(
    target: Arc<Target>,
    plan: Plan,
    workload: Arc<W>,
    progress: ProgressBar,
) -> PhaseRun<W::Note> {
    let connections = plan.connections.clamp(1, plan.requests.max(1) as usize);
    let shared = Arc::new(Shared {
        target,
        workload,
        next: AtomicU64::new(0),
        barrier: Barrier::new(connections),
        connecting: Semaphore::new(plan.connect_concurrency.max(1)),
        start: OnceCell::new(),
        progress,
        plan,
    });
    let mut workers = JoinSet::new();
    for w in 0..connections {
        workers.spawn(worker(shared.clone(), w));
    }
    let mut all = PhaseRun {
        samples: Vec::with_capacity(shared.plan.requests as usize),
        notes: Vec::new(),
        unanswered: Vec::new(),
        connect_failures: 0,
        started_wall: SystemTime::now(),
        last_sent_after: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    let mut last_sent = None;
    while let Some(done) = workers.join_next().await {
        let run = done.expect("load workers do not panic");
        all.samples.extend(run.samples);
        all.notes.extend(run.notes);
        all.unanswered.extend(run.unanswered);
        all.connect_failures += u64::from(run.connect_failed);
        last_sent = last_sent.max(run.last_sent);
    }
    let (start, start_wall) = *shared.start.get().expect("the barrier sets the start");
    all.started_wall = start_wall;
    all.elapsed = start.elapsed();
    all.last_sent_after = last_sent.map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    all.samples.sort_unstable_by_key(|s| s.at_us);
    all
}

async fn worker<W: Workload>(shared: Arc<Shared<W>>, w: usize) -> WorkerRun<W::Note> {
    let source = (!shared.plan.source_ips.is_empty())
        .then(|| shared.plan.source_ips[w % shared.plan.source_ips.len()]);
    let mut conn = open(&shared, source).await;
    let connect_failed = conn.is_none();
    shared.barrier.wait().await;
    let (start, _) = *shared
        .start
        .get_or_init(|| async {
            if let Some(gate) = &shared.plan.gate {
                gate().await;
            }
            (Instant::now(), SystemTime::now())
        })
        .await;
    let schedule = Schedule::new(start, shared.plan.model);
    let mut run = WorkerRun {
        samples: Vec::new(),
        notes: Vec::new(),
        unanswered: Vec::new(),
        connect_failed,
        last_sent: None,
    };
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.plan.requests {
            break;
        }
        if let Some(at) = schedule.intended(i) {
            tokio::time::sleep_until(at).await;
        }
        let call = shared.workload.call(i);
        let sent = Instant::now();
        let answer = send(&shared, &mut conn, source, &call).await;
        let done = Instant::now();
        run.last_sent = Some(sent);
        let status = match &answer {
            Ok(a) => a.status,
            Err(status) => *status,
        };
        run.samples.push(Sample {
            at_us: schedule.offset(i, sent).as_micros() as u64,
            latency_us: schedule.latency(i, sent, done).as_micros() as u64,
            status,
            route: call.route,
        });
        match answer {
            Ok(a) => run.notes.extend(shared.workload.note(i, &a)),
            Err(_) => run.unanswered.push(i),
        }
        shared.progress.inc(1);
    }
    run
}

async fn open<W>(shared: &Shared<W>, source: Option<IpAddr>) -> Option<Conn> {
    let _permit = shared.connecting.acquire().await.expect("never closed");
    for attempt in 0..3u32 {
        match Conn::open(&shared.target, source).await {
            Ok(c) => return Some(c),
            Err(_) => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
        }
    }
    None
}

/// Sends on the worker's connection, reopening it first when the server closed it.
/// Returns the answer, or the pseudo-status of the failure.
async fn send<W>(
    shared: &Shared<W>,
    conn: &mut Option<Conn>,
    source: Option<IpAddr>,
    call: &Call,
) -> Result<Answer, u16> {
    if !conn.as_ref().is_some_and(Conn::is_open) {
        *conn = Conn::open(&shared.target, source).await.ok();
    }
    let Some(c) = conn.as_mut() else { return Err(TRANSPORT_ERROR) };
    match tokio::time::timeout(shared.plan.request_timeout, c.send(call)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => {
            *conn = None;
            Err(TRANSPORT_ERROR)
        }
        Err(_) => {
            *conn = None;
            Err(TIMED_OUT)
        }
    }
}
