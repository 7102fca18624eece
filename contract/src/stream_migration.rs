//! Moving a command stream from Limits retention (releases before WorkQueue) to WorkQueue
//! retention on start, without losing an unsettled command.
//!
//! JetStream refuses to change a stream's retention to or from WorkQueue in place, so the
//! stream is re-created under the same name. The unsettled commands cross over through a
//! holding stream, `<NAME>_MIGRATION`:
//!
//! 1. **Park.** The old stream's subjects are changed to `_tps.parked.<NAME>`, so no new
//!    command lands in it; an api publishing meanwhile gets no stream and answers 503 with
//!    `Retry-After` (never a 202 for a command that could be dropped).
//! 2. **Hold.** Every command the shard consumers have not acked is copied, in stream order,
//!    into the holding stream (`_tps.hold.<NAME>.<original subject>`, headers kept). "Acked"
//!    means at or below the ack floor of *every* consumer whose filter matches the subject;
//!    a subject no consumer reads is copied whole. A command acked above the floor is copied
//!    too: its redelivery is harmless, because the command id is the Postgres key.
//! 3. **Re-create.** Only after every copy is acknowledged is the old stream deleted, and the
//!    WorkQueue stream created under the same name, first in *restore mode*: its only subject
//!    is `_tps.restore.<NAME>.>`, transformed back to the original subject on store, so the
//!    held commands go back first and keep their order ahead of any new command.
//! 4. **Restore.** The held commands are published back in order; then the stream gets its
//!    real subjects (intake reopens) and only then is the holding stream deleted.
//!
//! Every step is idempotent and each one starts from what the server shows, so a process that
//! dies anywhere is finished by the next start, and two processes migrating at once (an api
//! and a worker starting together) only publish duplicates, which JetStream's `Nats-Msg-Id`
//! window and the Postgres keys absorb. A stream or holding stream is deleted only by a
//! process that has itself copied all of its content onwards.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, RetentionPolicy, SubjectTransform};
use async_nats::jetstream::{self, consumer};
use futures::TryStreamExt;

use crate::streams::StreamError;
use crate::subject::DUPLICATE_WINDOW_SECS;

const PARKED: &str = "_tps.parked";
const HOLD: &str = "_tps.hold";
const RESTORE: &str = "_tps.restore";
/// Publishes in flight while copying.
const WINDOW: usize = 256;

/// The holding stream of `stream` during a migration.
pub fn hold_stream_name(stream: &str) -> String {
    format!("{stream}_MIGRATION")
}

/// What one call did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Commands copied from the old stream into the holding stream.
    pub held: u64,
    /// Commands published back from the holding stream.
    pub restored: u64,
}

/// Makes sure `target` (a WorkQueue command stream) exists, migrating an older stream of the
/// same name, or finishing a migration that was interrupted. Returns what was copied.
pub async fn ensure_work_queue(
    js: &jetstream::Context,
    target: &stream::Config,
) -> Result<Migrated, StreamError> {
    debug_assert_eq!(target.retention, RetentionPolicy::WorkQueue);
    let mut done = Migrated::default();
    let mut last = String::new();
    // Each step moves the state forward or fails; a racing process can make one step
    // fail (its stream vanished), and the next look at the server continues from there.
    for attempt in 0u32..40 {
        match step(js, target, &mut done).await {
            Ok(true) => return Ok(done),
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(stream = %target.name, attempt, error = %e, "stream migration step failed; retrying");
                last = e;
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10) + 1))).await;
            }
        }
    }
    Err(StreamError(target.name.clone(), format!("migration to WorkQueue retention did not finish: {last}")))
}

/// One step; `Ok(true)` when the stream is in its final state.
async fn step(js: &jetstream::Context, target: &stream::Config, done: &mut Migrated) -> Result<bool, String> {
    let name = &target.name;
    let hold_name = hold_stream_name(name);
    let current = stream_config(js, name).await?;
    let hold = stream_config(js, &hold_name).await?;
    match (current, hold) {
        (None, None) => {
            create(js, target.clone()).await?;
            Ok(false)
        }
        (Some(old), _) if old.retention != RetentionPolicy::WorkQueue => {
            done.held += hold_unsettled(js, old, target).await?;
            js.delete_stream(name).await.map_err(|e| format!("delete old {name}: {e}"))?;
            tracing::info!(stream = %name, held = done.held, "old stream deleted; its unsettled commands are held");
            Ok(false)
        }
        (None, Some(_)) => {
            create(js, restore_mode(target)).await?;
            Ok(false)
        }
        (Some(current), Some(_)) => {
            let in_restore_mode = is_restore_mode(&current);
            done.restored += restore(js, name, in_restore_mode).await?;
            if in_restore_mode {
                open_intake(js, target).await?;
            }
            js.delete_stream(&hold_name).await.map_err(|e| format!("delete {hold_name}: {e}"))?;
            tracing::info!(stream = %name, restored = done.restored, "migrated to WorkQueue retention");
            Ok(false)
        }
        (Some(current), None) if is_restore_mode(&current) => {
            // Restored by another process, which died before reopening intake.
            open_intake(js, target).await?;
            Ok(false)
        }
        (Some(_), None) => Ok(true),
    }
}

/// The stream's configuration, or None when it does not exist.
async fn stream_config(js: &jetstream::Context, name: &str) -> Result<Option<stream::Config>, String> {
    match js.get_stream(name).await {
        Ok(s) => Ok(Some(s.cached_info().config.clone())),
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
            Ok(None)
        }
        Err(e) => Err(format!("read stream {name}: {e}")),
    }
}

/// Creates a stream; one created meanwhile by another process is fine (the next step looks).
async fn create(js: &jetstream::Context, config: stream::Config) -> Result<(), String> {
    let name = config.name.clone();
    match js.create_stream(config).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NAME_EXIST) => {
            Ok(())
        }
        Err(e) => Err(format!("create {name}: {e}")),
    }
}

fn restore_prefix(stream: &str) -> String {
    format!("{RESTORE}.{stream}.")
}

fn hold_prefix(stream: &str) -> String {
    format!("{HOLD}.{stream}.")
}

/// The WorkQueue stream taking only the restored commands, stored under their own subjects.
fn restore_mode(target: &stream::Config) -> stream::Config {
    let restore = format!("{}>", restore_prefix(&target.name));
    stream::Config {
        subjects: vec![restore.clone()],
        subject_transform: Some(SubjectTransform { source: restore, destination: ">".into() }),
        ..target.clone()
    }
}

fn is_restore_mode(config: &stream::Config) -> bool {
    config.subjects.iter().any(|s| s.starts_with(RESTORE))
}

async fn open_intake(js: &jetstream::Context, target: &stream::Config) -> Result<(), String> {
    js.update_stream(target.clone()).await.map(|_| ()).map_err(|e| format!("reopen {}: {e}", target.name))
}

/// Parks the old stream, then copies its unsettled commands into the holding stream.
async fn hold_unsettled(
    js: &jetstream::Context,
    old: stream::Config,
    target: &stream::Config,
) -> Result<u64, String> {
    let name = old.name.clone();
    let parked = format!("{PARKED}.{name}");
    if old.subjects != [parked.clone()] {
        tracing::warn!(stream = %name, retention = ?old.retention,
            "migrating to WorkQueue retention; new commands are refused (503) until it is done");
        js.update_stream(stream::Config { subjects: vec![parked], ..old })
            .await
            .map_err(|e| format!("park {name}: {e}"))?;
    }
    let hold = stream::Config {
        name: hold_stream_name(&name),
        subjects: vec![format!("{}>", hold_prefix(&name))],
        retention: RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: target.num_replicas,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECS),
        ..Default::default()
    };
    create(js, hold).await?;

    // Read after parking: the floors only rise from here (workers may still ack).
    let source = js.get_stream(&name).await.map_err(|e| format!("read {name}: {e}"))?;
    let consumers: Vec<consumer::Info> =
        source.consumers().try_collect().await.map_err(|e| format!("consumers of {name}: {e}"))?;
    let subjects: Vec<(String, usize)> = source
        .info_with_subjects(">")
        .await
        .map_err(|e| format!("subjects of {name}: {e}"))?
        .try_collect()
        .await
        .map_err(|e| format!("subjects of {name}: {e}"))?;
    let mut copied = 0;
    for (subject, _) in subjects {
        let floor = settled_floor(&consumers, &subject);
        let to = format!("{}{subject}", hold_prefix(&name));
        copied += copy(js, &source, &subject, floor + 1, |_| to.clone()).await?;
    }
    Ok(copied)
}

/// The highest stream sequence of `subject` known settled: the lowest ack floor among the
/// consumers that read it (0 when none does, so everything is copied).
pub fn settled_floor(consumers: &[consumer::Info], subject: &str) -> u64 {
    consumers
        .iter()
        .filter(|c| {
            let filters: Vec<&str> = if c.config.filter_subjects.is_empty() {
                vec![c.config.filter_subject.as_str()]
            } else {
                c.config.filter_subjects.iter().map(String::as_str).collect()
            };
            filters.iter().any(|f| f.is_empty() || subject_matches(f, subject))
        })
        .map(|c| c.ack_floor.stream_sequence)
        .min()
        .unwrap_or(0)
}

/// NATS subject matching: `*` is one token, a final `>` one or more.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// Publishes the holding stream's commands back into `name`, in order.
async fn restore(js: &jetstream::Context, name: &str, in_restore_mode: bool) -> Result<u64, String> {
    let hold_name = hold_stream_name(name);
    let hold = js.get_stream(&hold_name).await.map_err(|e| format!("read {hold_name}: {e}"))?;
    let (held, restore) = (hold_prefix(name), restore_prefix(name));
    let filter = format!("{held}>");
    copy(js, &hold, &filter, 1, |subject| {
        let original = subject.strip_prefix(held.as_str()).unwrap_or(subject);
        if in_restore_mode { format!("{restore}{original}") } else { original.to_owned() }
    })
    .await
}

/// Copies the messages of `from` on `subject` from sequence `start` on, in order, with their
/// headers, to the subject `to` gives; returns once every copy is acknowledged.
async fn copy(
    js: &jetstream::Context,
    from: &stream::Stream,
    subject: &str,
    start: u64,
    to: impl Fn(&str) -> String,
) -> Result<u64, String> {
    let mut seq = start.max(1);
    let mut acks = Vec::with_capacity(WINDOW);
    let mut copied = 0;
    loop {
        let message = match from.get_first_raw_message_by_subject(subject, seq).await {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
            Err(e) => return Err(format!("read {subject} at {seq}: {e}")),
        };
        seq = message.sequence + 1;
        let ack = js
            .publish_with_headers(to(message.subject.as_str()), message.headers, message.payload)
            .await
            .map_err(|e| format!("copy {subject}: {e}"))?;
        acks.push(ack);
        copied += 1;
        if acks.len() >= WINDOW {
            for ack in acks.drain(..) {
                ack.await.map_err(|e| format!("copy {subject}: {e}"))?;
            }
        }
    }
    for ack in acks {
        ack.await.map_err(|e| format!("copy {subject}: {e}"))?;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("orders.3", "orders.3"));
        assert!(!subject_matches("orders.3", "orders.30"));
        assert!(subject_matches("orders.*", "orders.30"));
        assert!(!subject_matches("orders.*", "orders.3.x"));
        assert!(subject_matches("orders.>", "orders.3.x"));
        assert!(subject_matches(">", "orders.3"));
        assert!(!subject_matches("users.*", "orders.3"));
        assert!(!subject_matches("orders.3.x", "orders.3"));
    }

    #[test]
    fn restore_mode_takes_only_restored_commands_under_their_own_subjects() {
        let target = crate::streams::orders_stream(&Default::default());
        let config = restore_mode(&target);
        assert_eq!(config.subjects, ["_tps.restore.ORDERS.>"]);
        assert!(is_restore_mode(&config) && !is_restore_mode(&target));
        let t = config.subject_transform.unwrap();
        assert_eq!((t.source.as_str(), t.destination.as_str()), ("_tps.restore.ORDERS.>", ">"));
        assert_eq!(config.retention, RetentionPolicy::WorkQueue);
    }
}
