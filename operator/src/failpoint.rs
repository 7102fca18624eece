//! A failpoint for the restart test, read once from `TPS_FAILPOINT`.
//!
//! `TPS_FAILPOINT=crash-after-config-map` aborts the process (as `kill -9` would) right
//! after the first ConfigMap of a reconcile is applied: the streams exist, the finalizer is
//! on, the other children are not there yet. A restarted operator must converge from there.

use std::sync::OnceLock;

/// The env variable that arms the failpoint.
pub const FAILPOINT_ENV: &str = "TPS_FAILPOINT";

fn armed() -> bool {
    static ARMED: OnceLock<bool> = OnceLock::new();
    *ARMED.get_or_init(|| std::env::var(FAILPOINT_ENV).as_deref() == Ok("crash-after-config-map"))
}

/// Called after the ConfigMap is applied.
pub fn after_config_map() {
    if armed() {
        tracing::error!("failpoint crash-after-config-map: aborting mid-reconcile");
        std::process::abort();
    }
}
