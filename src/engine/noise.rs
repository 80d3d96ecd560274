//! A receiver refused as modified since the common snapshot: did anything
//! but access times and logs change? Asked of the receiver itself; proven
//! noise is rolled back (a shown, destructive step) and receives.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::{Engine, PoolError, checked};
use crate::plan::{self, Action, Item, Plan};
use crate::runner::Runner;
use crate::side::Side;
use crate::zfs::{self, Listing, Op};

impl<R: Runner> Engine<'_, R> {
    /// Did `target` change since `snapshot` in anything but access times
    /// and logs? Some(evidence) when it did not.
    pub(super) async fn probe(
        &mut self,
        remote: Side<'_>,
        target: &str,
        snapshot: &str,
        volume: bool,
    ) -> Option<String> {
        match changed_in_nothing(
            self.runner,
            remote,
            target,
            snapshot,
            volume,
            self.settings.command_timeout,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(dataset = %target, "cannot tell what changed on the receiver: {e}");
                None
            }
        }
    }
}

/// Did `target` (on `side`) change since `snapshot` in nothing but access
/// times and logs? `Some(evidence)` when no file (a filesystem: `zfs diff`)
/// or no block and no object (a volume: its stream since `snapshot`)
/// changed; None when something did (logged with what changed).
pub async fn changed_in_nothing<R: Runner>(
    runner: &R,
    side: Side<'_>,
    target: &str,
    snapshot: &str,
    volume: bool,
    timeout: Duration,
) -> Result<Option<String>, PoolError> {
    let op = Op::ChangedSince {
        dataset: target.to_string(),
        snapshot: snapshot.to_string(),
        volume,
    };
    debug!(command = %side.show(&op), "run");
    let out = checked(side, &op, runner.output(&side.cmd(&op), timeout).await)?;
    let verdict = if volume {
        // `Total DRR_WRITE records = 0 (0 bytes)`, one line per kind.
        let counts: Vec<u64> = out
            .lines()
            .filter_map(|l| l.split('=').nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        (!counts.is_empty() && counts.iter().all(|c| *c == 0)).then(|| {
            format!("its stream since @{snapshot} carries no block and no object (a pool import's log claim)")
        })
    } else if out.trim().is_empty() {
        Some(format!(
            "`zfs diff` since @{snapshot} lists no change (access times, metadata)"
        ))
    } else {
        let first: Vec<&str> = out.lines().take(5).collect();
        warn!(dataset = %target, "changed on the receiver since @{snapshot}: {}", first.join("; "));
        None
    };
    if let Some(v) = &verdict {
        info!(dataset = %target, "receiver changes since @{snapshot} are noise: {v}");
    }
    Ok(verdict)
}

/// The rollback that clears a receiver's proven noise before an incremental.
pub(super) fn discard_op(item: &Item) -> Option<Op> {
    match &item.action {
        Action::Incremental {
            base,
            discard: Some(_),
            ..
        } => Some(Op::Rollback {
            snapshot: format!("{}@{}", item.target, base.name),
            destroy_newer: false,
        }),
        _ => None,
    }
}

/// Receiver datasets refused as modified that may only carry noise: (name,
/// common snapshot, is a volume). Not when the receiver lost the last
/// run's base: its changes are that snapshot's data.
pub(super) fn noise_candidates(plan: &Plan, dst: &Listing) -> Vec<(String, String, bool)> {
    plan.items
        .iter()
        .filter_map(|i| match &i.action {
            Action::Conflict(plan::Conflict::ReceiverModified {
                common,
                lost_base: None,
                ..
            }) => Some((
                i.target.clone(),
                common.name.clone(),
                dst.datasets
                    .get(&i.target)
                    .is_some_and(|d| d.kind == zfs::Kind::Volume),
            )),
            _ => None,
        })
        .collect()
}
