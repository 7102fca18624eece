//! Events on meaningful transitions, all through the one shared Recorder.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::context::Context;
use crate::error::Result;
use crate::resource::{ConditionStatus, ConditionType, ThroughputService, ThroughputServiceStatus};

/// Ready reasons that mean the operator refused to act; each becomes a Warning event once.
pub const REFUSALS: [&str; 2] = ["InvalidSpec", ADOPTION_REFUSED];
/// The reason when a child's name is taken by an object this resource does not control.
pub const ADOPTION_REFUSED: &str = "AdoptionRefused";

/// Publishes one event about a resource.
pub async fn publish(
    ctx: &Context,
    tps: &ThroughputService,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<()> {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconciling".into(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &tps.object_ref(&())).await?;
    Ok(())
}

/// The events a status change deserves: streams provisioned or failing, the
/// service becoming ready or losing readiness, the spec becoming invalid.
pub fn transitions(
    old: Option<&ThroughputServiceStatus>,
    new: &ThroughputServiceStatus,
) -> Vec<(EventType, &'static str, String)> {
    let status_of = |s: Option<&ThroughputServiceStatus>, t| {
        s.and_then(|s| s.condition(t)).map(|c| (c.status, c.reason.clone()))
    };
    let mut events = Vec::new();
    let (old_streams, new_streams) =
        (status_of(old, ConditionType::StreamsReady), status_of(Some(new), ConditionType::StreamsReady));
    if old_streams.as_ref().map(|s| s.0) != new_streams.as_ref().map(|s| s.0) {
        match new_streams {
            Some((ConditionStatus::True, _)) => events.push((
                EventType::Normal,
                "StreamsProvisioned",
                message(new, ConditionType::StreamsReady),
            )),
            Some((ConditionStatus::False, _)) => {
                events.push((EventType::Warning, "StreamsFailed", message(new, ConditionType::StreamsReady)))
            }
            _ => {}
        }
    }
    let (old_ready, new_ready) =
        (status_of(old, ConditionType::Ready), status_of(Some(new), ConditionType::Ready));
    match (old_ready, new_ready) {
        (old, Some((ConditionStatus::False, reason)))
            if REFUSALS.contains(&reason.as_str())
                && old.as_ref().map(|o| o.1.as_str()) != Some(reason.as_str()) =>
        {
            let reason = REFUSALS.iter().find(|r| **r == reason).copied().unwrap_or("InvalidSpec");
            events.push((EventType::Warning, reason, message(new, ConditionType::Ready)));
        }
        (Some((ConditionStatus::True, _)), Some((ConditionStatus::False, _))) => {
            events.push((EventType::Warning, "NotReady", message(new, ConditionType::Ready)));
        }
        (old, Some((ConditionStatus::True, _)))
            if old.as_ref().map(|o| o.0) != Some(ConditionStatus::True) =>
        {
            events.push((EventType::Normal, "Ready", "the api and workers are available".into()));
        }
        _ => {}
    }
    events
}

fn message(status: &ThroughputServiceStatus, type_: ConditionType) -> String {
    status.condition(type_).map(|c| c.message.clone()).unwrap_or_default()
}
