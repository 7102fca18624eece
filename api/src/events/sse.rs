//! The same stream as Server-Sent Events: one `data:` JSON line per event.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::hub::Subscription;
use super::websocket::PING_EVERY;

/// The response that streams `sub` until the hub cancels it or `lifetime` (the token's) ends.
///
/// A client that stops reading stops hyper from polling this stream; the hub
/// then drops it from the fan-out when its queue fills, and the response ends
/// at the next write. Comment lines every [`PING_EVERY`] keep proxies from
/// timing the stream out.
pub fn respond(sub: Subscription, lifetime: Duration) -> Response {
    let mut response = Sse::new(events(sub).take_until(tokio::time::sleep(lifetime)))
        .keep_alive(KeepAlive::new().interval(PING_EVERY))
        .into_response();
    // Tell buffering proxies (nginx, Traefik's buffering middleware) to pass events through at once.
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    response
}

fn events(sub: Subscription) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(sub, |mut sub| async move {
        let batch = tokio::select! {
            biased;
            () = sub.cancel.cancelled() => None,
            batch = sub.queue.recv() => batch,
        }?;
        let events: Vec<Result<Event, Infallible>> =
            batch.iter().map(|t| Ok(Event::default().data(t.as_str()))).collect();
        Some((futures::stream::iter(events), sub))
    })
    .flatten()
}
