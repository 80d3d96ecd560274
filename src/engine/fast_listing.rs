//! The fast listing of a timer run: both sides listed with only the columns
//! OpenZFS 2.2+ reads without each snapshot's properties (name, guid,
//! createtxg), then one `zfs get` per side for every dataset and the few
//! snapshots whose other fields the run reads: each dataset's newest, the
//! newest one both sides share, and the last run's holds. The planner
//! matches by guid and createtxg, which the fast listing carries exactly.
//!
//! Used only when the last runs vouch for it ([`HoldHint::complete`]): a
//! full listing found every hold of ours recently, so the holds to look
//! at are the last run's. Anything the fast listing cannot answer exactly
//! (a conflict, a full send, a resume: they show every snapshot) makes the
//! pool listed again in full before anything is done
//! ([`why_full`]); any error in the fast listing itself makes the whole
//! run list in full. The debug log says which and why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::debug;

use super::PoolJob;
use super::holds::HoldHint;
use super::kept::{self, KeptPlace};
use super::listing::{Listed, chunked, list_ops, split};
use crate::plan::{Action, Plan};
use crate::runner::Runner;
use crate::side::Side;
use crate::ssh::Peer;
use crate::zfs::{self, Listing, Op};

/// Both sides of every job, from fast listings completed by `zfs get`.
/// An `Err` says why that did not work; the caller lists in full.
pub(super) async fn list_fast<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    jobs: &[PoolJob],
    hint: &HoldHint,
    kept: Option<&KeptPlace>,
) -> Result<Vec<Listed>, String> {
    let remote = Side::Remote(peer);
    let sroots: Vec<String> = jobs.iter().map(|j| j.source.clone()).collect();
    let droots: Vec<String> = jobs.iter().map(|j| j.target.clone()).collect();
    let kept_lists = match kept {
        Some(k) => match kept::list_kept(runner, timeout, peer, &sroots, &droots, k).await {
            Ok(l) => Some(l),
            Err(why) => {
                debug!(peer = %peer.name, "kept snapshot lists not used ({why}): listing every snapshot");
                None
            }
        },
        None => None,
    };
    let (mut src, mut dst) = match kept_lists {
        Some(l) => l,
        None => {
            let sop = Op::ListFast { roots: sroots };
            let dop = Op::ListFast { roots: droots };
            list_ops(runner, timeout, (Side::Local, &sop), (remote, &dop))
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let (sask, dask) = to_ask(&src, &dst, jobs, hint);
    let started = Instant::now();
    let (s, d) = tokio::join!(
        details(runner, timeout, Side::Local, &mut src, &sask),
        details(runner, timeout, remote, &mut dst, &dask)
    );
    s?;
    d?;
    debug!(
        "details of {} and {} datasets and snapshots in {:.2}s",
        sask.len(),
        dask.len(),
        started.elapsed().as_secs_f64()
    );
    let mut out = Vec::new();
    for j in jobs {
        let l = split(&mut src, &mut dst, j);
        if let Err(e) = &l {
            return Err(e.to_string());
        }
        out.push(l);
    }
    Ok(out)
}

/// One side's `zfs get`, [`chunked`], into its listing.
async fn details<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    listing: &mut Listing,
    names: &[String],
) -> Result<(), String> {
    let text = chunked(runner, timeout, side, names, |names| Op::Details { names })
        .await
        .map_err(|e| e.to_string())?;
    zfs::details::complete(listing, names, &text).map_err(|e| format!("{}: {e}", side.label()))
}

/// What each side's `zfs get` asks about (sorted, each once): every
/// dataset; each dataset's newest snapshot; the newest snapshot it shares
/// with its counterpart (by guid); the last run's holds still listed.
pub(super) fn to_ask(
    src: &Listing,
    dst: &Listing,
    jobs: &[PoolJob],
    hint: &HoldHint,
) -> (Vec<String>, Vec<String>) {
    let (mut s, mut d) = (BTreeSet::new(), BTreeSet::new());
    for (l, set) in [(src, &mut s), (dst, &mut d)] {
        for (name, ds) in &l.datasets {
            set.insert(name.clone());
            if let Some(n) = ds.newest() {
                set.insert(format!("{name}@{}", n.name));
            }
        }
    }
    for (name, sd) in &src.datasets {
        let Some(j) = jobs
            .iter()
            .find(|j| zfs::names::is_at_or_below(name, &j.source))
        else {
            continue;
        };
        let target = zfs::names::rebase(name, &j.source, &j.target);
        let Some(dd) = dst.datasets.get(&target) else {
            continue;
        };
        let theirs: BTreeMap<u64, &str> = dd.snapshots.iter().map(|x| (x.guid, &*x.name)).collect();
        if let Some((a, b)) = sd
            .snapshots
            .iter()
            .rev()
            .find_map(|x| theirs.get(&x.guid).map(|b| (&x.name, *b)))
        {
            s.insert(format!("{name}@{a}"));
            d.insert(format!("{target}@{b}"));
        }
    }
    for (l, set, held) in [(src, &mut s, &hint.local), (dst, &mut d, &hint.remote)] {
        for h in held {
            if let Some((ds, short)) = h.split_once('@')
                && l.datasets
                    .get(ds)
                    .is_some_and(|d| d.snapshots.iter().any(|x| &*x.name == short))
            {
                set.insert(h.clone());
            }
        }
    }
    (s.into_iter().collect(), d.into_iter().collect())
}

/// Why a plan made from fast listings cannot be carried out as it is:
/// an action that reads snapshots the fast listing knows only by name,
/// guid and createtxg (a conflict shows them, a full send starts from the
/// oldest, a resume or a discard changes the receiver first). None: every
/// item is up to date, excluded, without snapshots, or a plain incremental
/// from the newest common snapshot (exact) to the newest (exact).
pub(super) fn why_full(plan: &Plan) -> Option<String> {
    plan.items.iter().find_map(|i| {
        let what = match &i.action {
            Action::UpToDate { .. } | Action::NoSnapshots | Action::Excluded => return None,
            Action::Incremental { discard: None, .. } => return None,
            Action::Incremental { .. } => "a discard",
            Action::Full { .. } => "a full send",
            Action::Resume { .. } => "a resume",
            Action::Conflict(_) => "a conflict",
            Action::Blocked { .. } => "a blocked dataset",
        };
        Some(format!("{}: {what}", i.source))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ds, listing};

    fn job(source: &str, target: &str) -> PoolJob {
        PoolJob {
            source: source.into(),
            target: target.into(),
            exclude: Vec::new(),
            guard: None,
        }
    }

    #[test]
    fn asks_for_every_dataset_the_newest_the_common_and_the_holds() {
        let src = listing(vec![
            ds("zpool1", "s1:1:1 s2:2:2 s3:3:3 s4:4:4", 0),
            ds("zpool1/a", "s1:11:11 s2:12:12", 0),
        ]);
        let dst = listing(vec![
            ds("backup", "s1:1:1 s2:2:2 x:9:9", 0),
            ds("backup/a", "", 0),
            ds("backup/gone", "s1:21:21", 0),
        ]);
        let hint = HoldHint {
            local: vec!["zpool1@s1".into(), "zpool1@pruned".into()],
            remote: vec!["backup@s1".into()],
            complete: true,
        };
        let (s, d) = to_ask(&src, &dst, &[job("zpool1", "backup")], &hint);
        assert_eq!(
            s,
            [
                "zpool1",
                "zpool1/a",
                "zpool1/a@s2",
                "zpool1@s1",
                "zpool1@s2",
                "zpool1@s4"
            ]
        );
        assert_eq!(
            d,
            [
                "backup",
                "backup/a",
                "backup/gone",
                "backup/gone@s1",
                "backup@s1",
                "backup@s2",
                "backup@x"
            ]
        );
    }

    #[test]
    fn only_plain_plans_go_ahead_on_a_fast_listing() {
        let opts = crate::plan::Options::default();
        let plan = |s: &Listing, d: &Listing| crate::plan::plan(s, "zpool1", d, "zpool1", &opts);
        let src = listing(vec![ds("zpool1", "a:1:1 b:2:2 c:3:3", 0)]);
        let same = listing(vec![ds("zpool1", "a:1:1 b:2:2 c:3:3", 0)]);
        let behind = listing(vec![ds("zpool1", "a:1:1 b:2:2", 0)]);
        let diverged = listing(vec![ds("zpool1", "a:1:1 b:2:2 x:9:9", 0)]);
        assert_eq!(why_full(&plan(&src, &same)), None);
        assert_eq!(why_full(&plan(&src, &behind)), None);
        assert_eq!(
            why_full(&plan(&src, &diverged)).as_deref(),
            Some("zpool1: a conflict")
        );
        assert_eq!(
            why_full(&plan(&src, &Listing::default())).as_deref(),
            Some("zpool1: a full send")
        );
    }
}
