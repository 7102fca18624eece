//! The push lane: the threads that deliver live updates, apart from the ones that answer requests.
//!
//! During a flash sale the request runtime is busy: every worker thread has hundreds of
//! runnable request tasks, and a pushed order update woken among them waits its turn
//! behind them (p99 about 1 s with 10,000 clients, BENCHMARKS.md). The lane is a small
//! runtime of its own (`API_PUSH_THREADS`, 1 by default) that runs the event pump, its own
//! NATS connection for the workers' events, and every WebSocket connection. Its threads
//! sleep until an event arrives, so the kernel's scheduler runs them as soon as they wake,
//! ahead of the request threads that have used their share: a push is no longer queued
//! behind the requests, while the requests lose only the CPU the pushes really take.
//!
//! `API_PUSH_THREADS=0` runs all of it on the request runtime instead.

use std::future::Future;
use std::io;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// Where live updates run: a runtime of their own, or the caller's.
pub struct Lane {
    /// `None`: the request runtime (`API_PUSH_THREADS=0`).
    runtime: Option<Runtime>,
}

impl Lane {
    /// A lane of `threads` threads named `tps-push`; 0 shares the request runtime.
    pub fn start(threads: usize) -> io::Result<Self> {
        if threads == 0 {
            return Ok(Self { runtime: None });
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tps-push")
            .enable_all()
            .build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Whether the lane has threads of its own.
    pub fn is_separate(&self) -> bool {
        self.runtime.is_some()
    }

    /// Runs `task` on the lane. Must be called from within a Tokio runtime.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(task),
            None => Handle::current().spawn(task),
        }
    }

    /// Runs `task` on the lane and waits for its result: anything it spawns (a NATS
    /// client's connection task, for one) lives on the lane too.
    pub async fn run<F>(&self, task: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => match runtime.spawn(task).await {
                Ok(output) => output,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
            None => task.await,
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async context may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_separate_lane_runs_tasks_on_its_own_threads_and_zero_runs_them_here() {
        let lane = Lane::start(1).unwrap();
        assert!(lane.is_separate());
        assert_eq!(lane.spawn(async { thread_name() }).await.unwrap(), "tps-push");
        assert_eq!(lane.run(async { tokio::spawn(async { thread_name() }).await.unwrap() }).await, "tps-push");
        drop(lane);

        let shared = Lane::start(0).unwrap();
        assert!(!shared.is_separate());
        assert_ne!(shared.spawn(async { thread_name() }).await.unwrap(), "tps-push");
        assert_ne!(shared.run(async { thread_name() }).await, "tps-push");
    }
}
