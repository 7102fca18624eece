//! Sign-ups: the [`CommandKind`] that settles `SignupCommand`s from `users.<shard>`.
//!
//! In one transaction per batch: skip ids already settled, keep the first of
//! each id and of each email (by its key: NFKC, Unicode lower case; one function,
//! `tps_contract::command::email_key`) in arrival order, insert the
//! candidates as CREATED in one statement that yields to the unique email
//! index, store the rest as REJECTED with `DUPLICATE_EMAIL`, and insert every
//! created user's projects and log entries. A user and its rows commit together.
//!
//! Sign-ups are sharded by id, so two sign-ups with one email may be settled by
//! two workers at once. The partial unique index on `email_key` decides: the
//! second insert waits for the first transaction, then skips the row, which is
//! then rejected. Candidates are inserted in email order, so two batches never
//! wait on each other in opposite orders (no deadlock).

mod rekey;
mod store;

use std::collections::HashSet;

use sqlx::PgConnection;
use tps_contract::SignupCommand;
use tps_contract::subject::{StreamNames, USERS_STREAM};
use uuid::Uuid;

pub use rekey::rekey_pending;
pub use store::UserRow;

use crate::metrics;
use crate::settling::command_kind::{CommandKind, Delivery};

/// Settles sign-up commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Users;

/// What one committed batch of sign-ups changed.
#[derive(Debug, Default)]
pub struct SettledUsers {
    /// Users inserted by this batch, created or rejected.
    pub inserted: Vec<UserRow>,
    /// Messages whose id was already settled, earlier or in this batch.
    pub duplicates: u64,
    /// Of those, the ones carrying a different body than the stored one (the first stands).
    pub conflicts: u64,
}

impl CommandKind for Users {
    const STREAM: &'static str = USERS_STREAM;
    type Command = SignupCommand;
    type Settled = SettledUsers;

    fn validate(&self, command: &SignupCommand) -> Result<(), String> {
        command.user.validate()
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        batch: &[Delivery<SignupCommand>],
    ) -> Result<SettledUsers, sqlx::Error> {
        let ids: Vec<Uuid> = batch.iter().map(|d| d.command.user.id).collect();
        let stored = store::fingerprints(tx, &ids).await?;
        let mut seen: HashSet<Uuid> = stored.keys().copied().collect();
        let mut ordered: Vec<&Delivery<SignupCommand>> = batch.iter().collect();
        // First come, first served: by arrival on the shard.
        ordered.sort_by_key(|d| d.seq);
        let (mut fresh, mut duplicates, mut conflicts) = (Vec::with_capacity(batch.len()), 0, 0);
        for d in ordered {
            let user = &d.command.user;
            if seen.insert(user.id) {
                fresh.push(d);
                continue;
            }
            duplicates += 1;
            if stored.get(&user.id).is_some_and(|fp| *fp != user.fingerprint()) {
                conflicts += 1;
            }
        }

        let processed_at = store::commit_clock(tx).await?;
        let mut emails: HashSet<String> = HashSet::new();
        let (mut candidates, mut rejected) = (Vec::new(), Vec::new());
        for d in fresh {
            let row = UserRow::from_command(&d.command, d.seq, processed_at);
            let clash = row.email_key.as_ref().is_some_and(|key| !emails.insert(key.clone()));
            if clash { rejected.push(row.rejected()) } else { candidates.push(row) }
        }
        candidates.sort_by(|a, b| a.email_key.cmp(&b.email_key));
        let created_ids = store::insert_created(tx, &candidates).await?;
        let (created, taken): (Vec<UserRow>, Vec<UserRow>) =
            candidates.into_iter().partition(|r| created_ids.contains(&r.user.id));
        rejected.extend(taken.into_iter().map(UserRow::rejected));
        store::insert_rejected(tx, &rejected).await?;
        let mut inserted = created;
        inserted.extend(rejected);
        Ok(SettledUsers { inserted, duplicates, conflicts })
    }

    async fn announce(&self, _nats: &async_nats::Client, _names: &StreamNames, settled: SettledUsers) {
        for row in &settled.inserted {
            metrics::settled(USERS_STREAM, row.outcome(), 1);
            let lag = (row.processed_at - row.created_at).to_std().unwrap_or_default();
            metrics::settle_lag(USERS_STREAM, lag);
        }
        metrics::settled(USERS_STREAM, "DUPLICATE", settled.duplicates);
        if settled.conflicts > 0 {
            tracing::warn!(
                n = settled.conflicts,
                "sign-ups redelivered under a known id with another body; the first body stands"
            );
        }
    }
}
