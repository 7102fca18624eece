//! Leader election on a Lease (kube-lease-manager): only the leader reconciles.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Name of the Lease the replicas compete for.
pub const LEASE_NAME: &str = "tps-operator-leader";
/// Seconds a lease lasts without renewal.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const GRACE_SECONDS: u64 = 5;

/// Whether to elect a leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LeaderElection {
    /// On when more than one replica runs (`OPERATOR_REPLICAS` > 1).
    Auto,
    /// Always.
    On,
    /// Never: a single replica reconciles alone.
    Off,
}

impl LeaderElection {
    /// Whether election is on for this many replicas.
    pub fn enabled(self, replicas: u32) -> bool {
        match self {
            LeaderElection::Auto => replicas > 1,
            LeaderElection::On => true,
            LeaderElection::Off => false,
        }
    }
}

/// A held leadership: `lost()` resolves if the lease is lost; `release()` hands it back.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Waits until this replica holds the Lease `LEASE_NAME` in `namespace`.
pub async fn acquire(
    client: Client,
    namespace: &str,
    identity: &str,
) -> kube_lease_manager::Result<Leadership> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            break;
        }
    }
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Resolves when leadership is lost (another replica then takes over).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut state = self.state.clone();
        async move {
            while *state.borrow_and_update() {
                if state.changed().await.is_err() {
                    break;
                }
            }
        }
    }

    /// Releases the Lease so a standby takes over without waiting for expiry.
    pub async fn release(self) {
        drop(self.state);
        // With every receiver gone, the manager's task releases the Lease and ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::LeaderElection;

    #[test]
    fn auto_elects_only_with_more_than_one_replica() {
        assert!(!LeaderElection::Auto.enabled(1));
        assert!(LeaderElection::Auto.enabled(2));
        assert!(LeaderElection::On.enabled(1));
        assert!(!LeaderElection::Off.enabled(3));
    }
}
