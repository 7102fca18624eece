//! One WebSocket connection: queued batches out, pings to keep it alive,
//! closed when the hub drops it, the client leaves, or its token expires.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hub::{Batch, Ended, Subscription};
use crate::telemetry::metrics;

/// How often the server pings; a client silent for three of these is gone.
pub const PING_EVERY: Duration = Duration::from_secs(20);

/// Largest message a client may send. Clients have nothing to say on this
/// stream but pongs and a close, so anything big is abuse.
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// Read buffer of one connection: enough for the largest client message.
pub const READ_BUFFER: usize = 4 * 1024;

/// Bytes gathered before a write reaches the socket (every event is flushed anyway).
pub const WRITE_BUFFER: usize = 8 * 1024;

/// Serves `socket` until it ends; `lifetime` is what is left of the token.
pub async fn serve(socket: WebSocket, mut sub: Subscription, lifetime: Duration) {
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval_at(Instant::now() + first_ping(PING_EVERY), PING_EVERY);
    let mut heard = Instant::now();
    let expiry = tokio::time::sleep(lifetime);
    tokio::pin!(expiry);
    let goodbye = loop {
        tokio::select! {
            biased;
            () = sub.cancel.cancelled() => break match sub.ended() {
                // A client too slow for its queue cannot take a close frame either.
                Some(Ended::TooSlow) | None => None,
                Some(Ended::Shutdown) => Some((close_code::AWAY, "server shutting down")),
            },
            batch = sub.queue.recv() => match batch {
                Some(batch) if send(&mut sink, &batch, &sub.cancel).await => {}
                _ => break None,
            },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
                Some(Ok(_)) => heard = Instant::now(),
            },
            _ = ping.tick() => {
                if heard.elapsed() > 3 * PING_EVERY {
                    break None;
                }
                if !send_message(&mut sink, Message::Ping(Default::default()), &sub.cancel).await {
                    break None;
                }
            }
            () = &mut expiry => break Some((close_code::POLICY, "token expired")),
        }
    };
    if let Some((code, reason)) = goodbye {
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
    }
}

/// When a new connection first pings: anywhere from half to one and a half intervals, so
/// that a crowd that connected together (a sale's opening minute) does not ping all at once
/// every interval, one write per connection in the same instant, while orders are pushed.
fn first_ping(every: Duration) -> Duration {
    every / 2 + every.mul_f64(rand::random::<f64>())
}

/// Writes every event of `batch`, giving up if the hub cancels meanwhile; times its order
/// updates from their commit to the write (`tps_api_push_delay_seconds`).
async fn send(sink: &mut SplitSink<WebSocket, Message>, batch: &Batch, cancel: &CancellationToken) -> bool {
    let write = async {
        for text in batch.iter() {
            sink.feed(Message::Text(text.clone())).await?;
        }
        sink.flush().await
    };
    let written = tokio::select! {
        written = write => written.is_ok(),
        () = cancel.cancelled() => false,
    };
    if written && !batch.commits().is_empty() {
        let now = chrono::Utc::now();
        for committed in batch.commits() {
            let delay = (now - *committed).to_std().unwrap_or_default();
            metrics().push_delay.observe(delay.as_secs_f64());
        }
    }
    written
}

async fn send_message(
    sink: &mut SplitSink<WebSocket, Message>,
    msg: Message,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        written = sink.send(msg) => written.is_ok(),
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pings_spread_over_an_interval_around_the_period() {
        let every = Duration::from_secs(20);
        let firsts: Vec<Duration> = (0..1_000).map(|_| first_ping(every)).collect();
        assert!(firsts.iter().all(|f| *f >= every / 2 && *f < every * 3 / 2), "within half a period");
        // 1,000 connections opened together: no tenth of the range holds more than a fifth of them.
        let mut tenths = [0usize; 10];
        for f in &firsts {
            tenths[((f.as_secs_f64() - 10.0) / 2.0) as usize] += 1;
        }
        assert!(tenths.iter().all(|n| *n > 0 && *n < 200), "spread: {tenths:?}");
    }
}
