//! The push lane: live updates run on a thread of their own.
//!
//! Under a sale the api's worker threads each hold thousands of runnable request
//! tasks, and a WebSocket task woken by an order update waits behind them. The
//! events subscription (on its own NATS connection), the pump and every WebSocket
//! connection's task run instead on a single-threaded runtime on a dedicated thread.
//! It is idle most of the time, so the kernel runs it soon after it wakes: an order
//! update waits for the CPU, not for every request queued in the pod.

use std::future::Future;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The push lane's runtime. Dropping it stops the thread and cancels what runs on it.
pub struct Lane {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl Lane {
    /// Starts the lane's thread (`tps-push`).
    pub fn start() -> std::io::Result<Self> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name("tps-push".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, _stop: stop })
    }

    /// Runs `task` on the lane.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_lane_thread_and_stop_with_it() {
        let lane = Lane::start().unwrap();
        let name = lane.spawn(async { std::thread::current().name().map(str::to_owned) }).await.unwrap();
        assert_eq!(name.as_deref(), Some("tps-push"));
        let forever = lane.spawn(std::future::pending::<()>());
        drop(lane);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), forever).await;
        assert!(matches!(ended, Ok(Err(ref e)) if e.is_cancelled()), "{ended:?}");
    }
}
