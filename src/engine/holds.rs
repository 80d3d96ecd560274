//! Holds on the common base, both sides: pruning can never remove the last
//! snapshot an incremental needs. Hold before release; which holds are ours
//! is asked of both sides at once, speculatively during the listings.
//!
//! Tags: `<hold_tag>:<other node>`: on this node the peer's name, on the
//! peer this node's. With three or more nodes, a standby also carries the
//! holds an earlier master put there (`<hold_tag>:<that node>`): once this
//! master's own hold is on the new base, those protect nothing this master
//! sends, and would keep their snapshot from ever being pruned, so they
//! are released with ours.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tracing::debug;

use super::{Engine, PoolError, checked};
use crate::execute::Executor;
use crate::runner::Runner;
use crate::side::Side;
use crate::ssh::Peer;
use crate::step::{Step, step};
use crate::zfs::{self, Listing, Op};

impl<R: Runner> Engine<'_, R> {
    /// Hold each dataset's new base on both sides and release our older holds,
    /// so pruning can never remove the last common snapshot. Hold before
    /// release: a failure leaves the old base protected. Which holds are ours
    /// is asked of both sides at once (or taken from `spec`, asked during the
    /// listings, when it was asked about exactly the right snapshots).
    pub(super) async fn update_holds(
        &mut self,
        peer: &Peer,
        lists: &[&(Listing, Listing)],
        src_want: &BTreeMap<String, String>,
        dst_want: &BTreeMap<String, String>,
        spec: &SpecHolds,
    ) -> Result<(), PoolError> {
        let src_tag = format!("{}:{}", self.settings.hold_tag, peer.name);
        let dst_tag = format!("{}:{}", self.settings.hold_tag, self.settings.local_node);
        // On the peer: ours, and those of every other node (earlier masters).
        let dst_tags: Vec<String> = std::iter::once(dst_tag.clone())
            .chain(
                self.settings
                    .cluster_nodes
                    .iter()
                    .filter(|n| **n != self.settings.local_node && **n != peer.name)
                    .map(|n| format!("{}:{n}", self.settings.hold_tag)),
            )
            .collect();
        let src_held = held(lists.iter().map(|l| &l.0), src_want);
        let dst_held = held(lists.iter().map(|l| &l.1), dst_want);
        let (runner, timeout) = (self.runner, self.settings.command_timeout);
        let remote = Side::Remote(peer);
        let (src_ours, dst_ours) = tokio::join!(
            ours(
                runner,
                timeout,
                Side::Local,
                &src_held,
                std::slice::from_ref(&src_tag),
                spec.local.as_ref()
            ),
            ours(
                runner,
                timeout,
                remote,
                &dst_held,
                &dst_tags,
                spec.remote.as_ref()
            )
        );
        let (mut src_ours, mut dst_ours) = (src_ours?, dst_ours?);
        let src_moves = moves(
            &src_ours.remove(&src_tag).unwrap_or_default(),
            &src_tag,
            src_want,
        );
        let mut dst_moves = moves(
            &dst_ours.remove(&dst_tag).unwrap_or_default(),
            &dst_tag,
            dst_want,
        );
        // Another master's holds, on datasets that now hold ours on their
        // new base (only those were asked about): released after ours.
        for (tag, snaps) in &dst_ours {
            dst_moves.1.extend(releases(
                tag,
                snaps.iter().cloned().collect(),
                "an earlier master's hold: this master's own now protects the common base",
            ));
        }
        // Both sides at once, holds first: a release runs only once every new
        // base is held on both sides, so a failure anywhere leaves each old
        // base protected where it was (a new hold already taken is ours, and
        // released by a later run once it is no longer the base).
        self.both_sides(remote, &src_moves.0, &dst_moves.0).await?;
        self.both_sides(remote, &src_moves.1, &dst_moves.1).await
    }

    /// Some steps on this node and some on the peer, at once.
    async fn both_sides(
        &mut self,
        remote: Side<'_>,
        local: &[Step],
        peer: &[Step],
    ) -> Result<(), PoolError> {
        let (dry_run, timeout) = (self.settings.dry_run, self.settings.command_timeout);
        let mut lex = Executor::new(self.runner, dry_run, timeout).showing("  holds: ");
        let mut rex = Executor::new(self.runner, dry_run, timeout).showing("  holds: ");
        let (l, r) = tokio::join!(lex.run(Side::Local, local), rex.run(remote, peer));
        self.shown.extend(lex.shown);
        self.shown.extend(rex.shown);
        if let Some(f) = l.failure {
            return Err(PoolError::of_step(Side::Local, f));
        }
        match r.failure {
            Some(f) => Err(PoolError::of_step(remote, f)),
            None => Ok(()),
        }
    }
}

/// On one side: the holds to take (the new bases not yet held with our
/// tag) and the holds to release (ours on what is no longer a base).
fn moves(
    ours: &BTreeSet<String>,
    tag: &str,
    want: &BTreeMap<String, String>,
) -> (Vec<Step>, Vec<Step>) {
    let to_hold: Vec<String> = want
        .values()
        .filter(|s| !ours.contains(*s))
        .cloned()
        .collect();
    let wanted: BTreeSet<&String> = want.values().collect();
    let to_release: Vec<String> = ours
        .iter()
        .filter(|s| !wanted.contains(s))
        .cloned()
        .collect();
    let holds = chunked(
        &to_hold,
        "the new common base: pruning must not remove it",
        |snapshots| Op::Hold {
            tag: tag.to_string(),
            snapshots,
        },
    );
    (
        holds,
        releases(tag, to_release, "no longer the common base"),
    )
}

/// Release `tag` from `snapshots`, 500 to a command.
fn releases(tag: &str, snapshots: Vec<String>, why: &'static str) -> Vec<Step> {
    chunked(&snapshots, why, |snapshots| Op::Release {
        tag: tag.to_string(),
        snapshots,
    })
}

/// One step per 500 snapshots (a command line stays short).
fn chunked(snapshots: &[String], why: &'static str, op: impl Fn(Vec<String>) -> Op) -> Vec<Step> {
    snapshots
        .chunks(500)
        .map(|chunk| step(op(chunk.to_vec()), why))
        .collect()
}

/// The snapshots the previous run held, on each side (full names).
#[derive(Debug, Clone, Default)]
pub struct HoldHint {
    pub local: Vec<String>,
    pub remote: Vec<String>,
    /// These are every hold of ours: a full listing, which finds the
    /// snapshots carrying any hold by `userrefs`, was made recently enough
    /// and since this node became master. Then a fast listing
    /// ([`super::fast_listing`]) may look for holds only on these, the
    /// newest and the common snapshots; a hold leaked by a crash elsewhere
    /// waits for the next full listing.
    pub complete: bool,
}

/// A `zfs holds` answer: the snapshots asked about (sorted), and every
/// `(snapshot, tag)` it listed.
pub(super) type Answer = (Vec<String>, Vec<(String, String)>);

/// The answers to the speculative `zfs holds`, when they came.
#[derive(Debug, Default)]
pub(super) struct SpecHolds {
    local: Option<Answer>,
    remote: Option<Answer>,
}

/// More than this and the hint is not worth a command of its own.
pub(super) const SPEC_MAX: usize = 2000;

pub(super) async fn speculative_holds<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    hint: &HoldHint,
) -> SpecHolds {
    let (local, remote) = tokio::join!(
        ask_holds(runner, timeout, Side::Local, &hint.local),
        ask_holds(runner, timeout, Side::Remote(peer), &hint.remote)
    );
    SpecHolds { local, remote }
}

pub(super) async fn ask_holds<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    snaps: &[String],
) -> Option<Answer> {
    if snaps.is_empty() || snaps.len() > SPEC_MAX {
        return None;
    }
    let op = Op::Holds {
        snapshots: snaps.to_vec(),
    };
    // A snapshot pruned since makes the whole command fail: then the holds
    // are asked again after the listings.
    let out = runner.output(&side.cmd(&op), timeout).await.ok()?;
    if !out.success() {
        return None;
    }
    let mut sorted = snaps.to_vec();
    sorted.sort();
    Some((sorted, zfs::parse_holds(&out.stdout).ok()?))
}

/// The snapshots that carry any hold (only those can carry ours), of the
/// datasets we want to hold, sorted.
pub(super) fn held<'l>(
    listings: impl Iterator<Item = &'l Listing>,
    want: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut v: Vec<String> = listings
        .flat_map(|l| l.datasets.values())
        .filter(|d| want.contains_key(&d.name))
        .flat_map(|d| {
            d.snapshots
                .iter()
                .filter(|s| s.userrefs > 0)
                .map(move |s| format!("{}@{}", d.name, s.name))
        })
        .collect();
    v.sort();
    v
}

/// Which of `held` carry each of `tags` (tag -> snapshots; a tag found on
/// none is absent): from the speculative answer when it asked about
/// exactly these snapshots, else asked now (500 at a time).
pub(super) async fn ours<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    held: &[String],
    tags: &[String],
    spec: Option<&Answer>,
) -> Result<BTreeMap<String, BTreeSet<String>>, PoolError> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut mine = |holds: &[(String, String)], asked: &BTreeSet<&String>| {
        // Only what we asked about: never act on a hold we did not look for.
        for (s, t) in holds {
            if tags.contains(t) && asked.contains(s) {
                out.entry(t.clone()).or_default().insert(s.clone());
            }
        }
    };
    if let Some((asked, holds)) = spec
        && asked.as_slice() == held
    {
        let asked: BTreeSet<&String> = asked.iter().collect();
        mine(holds, &asked);
        return Ok(out);
    }
    for chunk in held.chunks(500) {
        let op = Op::Holds {
            snapshots: chunk.to_vec(),
        };
        debug!(command = %side.show(&op), "run");
        let text = checked(side, &op, runner.output(&side.cmd(&op), timeout).await)?;
        let holds = zfs::parse_holds(&text).map_err(|e| PoolError::Parse {
            side: side.label(),
            msg: format!("zfs holds: {e}"),
        })?;
        let asked: BTreeSet<&String> = chunk.iter().collect();
        mine(&holds, &asked);
    }
    Ok(out)
}
