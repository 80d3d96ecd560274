//! The size guards, pure: both sides' listings and the pool's size history
//! in, the reasons to refuse out. They exist so that an empty, replaced or
//! recreated disk can never overwrite good data: every one of them refuses
//! the whole pool (nothing is sent) until the numbers look right again or
//! the operator accepts the change once (`run --accept-size-change POOL`).

use crate::history::Entry;
use crate::units::human_bytes;
use crate::zfs::Listing;

/// Differences smaller than this are noise (metadata, a few small files),
/// whatever the ratio: a fresh filesystem alone references ~100 KiB.
pub const SLACK: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Refuse when a source dataset uses less than this fraction of its replica.
    pub min_size_ratio: f64,
    /// Refuse when a dataset shrank (source) or changed (replica) by more
    /// than this fraction since the last successful run.
    pub history_tolerance: f64,
}

pub struct Input<'a> {
    pub root: &'a str,
    pub target: &'a str,
    pub peer: &'a str,
    pub source: &'a Listing,
    pub receiver: &'a Listing,
    /// The last successful run's entry for this peer, if any.
    pub last: Option<&'a Entry>,
    pub t: Thresholds,
    /// A planned migration's handover: the old master sends what its users
    /// left when the guest stopped. A dataset that shares a snapshot with
    /// its replica is the same dataset (no replaced disk has one), and an
    /// incremental receive keeps the replica's older snapshots: its
    /// shrinking is sent, and logged ([`Verdict::waived`]), not refused.
    pub handover: bool,
}

/// The guards' answer.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    /// Reasons to refuse the pool; empty when it may be replicated.
    pub refuse: Vec<String>,
    /// Shrinking that a handover sends anyway (to log).
    pub waived: Vec<String>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Would the min-ratio guard (source against replica) refuse this dataset?
fn below_replica(
    d_used: u64,
    d_ref: u64,
    r_used: u64,
    r_ref: u64,
    root: bool,
    t: Thresholds,
) -> bool {
    (d_ref <= SLACK && r_ref > SLACK)
        || smaller(d_ref, r_ref, t.min_size_ratio)
        || (root && smaller(d_used, r_used, t.min_size_ratio))
}

fn smaller(now: u64, was: u64, ratio_min: f64) -> bool {
    was > now.saturating_add(SLACK) && ratio(now, was) < ratio_min
}

/// A size the operator accepted while the replica held more still stands:
/// the dataset is the one accepted (it still has the snapshot both sides
/// shared then) and has not shrunk further beyond `history_tolerance`.
fn still_accepted(d: &crate::zfs::Dataset, was: &crate::history::Sizes, t: Thresholds) -> bool {
    let same = match &was.snapshot {
        Some(s) => d.snapshots.iter().any(|x| x.guid == s.guid),
        None => true,
    };
    let tol = 1.0 - t.history_tolerance;
    was.accepted
        && same
        && !smaller(d.referenced, was.referenced, tol)
        && !smaller(d.used, was.used, tol)
}

/// Mark, in the entry a run is about to record, the datasets whose sizes
/// the operator accepted: accepted by this run (`accepting`), or by an
/// earlier one (`last`) and still not replicated. Only where the min-ratio
/// guard would refuse otherwise: once a transfer has brought the replica
/// down, the mark is gone and the guard is whole again.
pub fn mark_acceptance(
    entry: &mut Entry,
    root: &str,
    last: Option<&Entry>,
    accepting: bool,
    t: Thresholds,
) {
    for (name, s) in entry.datasets.iter_mut() {
        let (Some(r_used), Some(r_ref)) = (s.replica_used, s.replica_referenced) else {
            s.accepted = false;
            continue;
        };
        let before = last
            .and_then(|l| l.datasets.get(name))
            .is_some_and(|w| w.accepted);
        s.accepted = (accepting || before)
            && below_replica(s.used, s.referenced, r_used, r_ref, name == root, t);
    }
}

/// Every reason to refuse the pool; empty when it may be replicated.
///
/// Datasets are compared by `referenced` (their live data: what a receive
/// replaces), the pool as a whole by its root's `used` (everything below it).
/// Comparing each dataset's `used` would flag the normal difference in
/// snapshot retention between the two sides.
pub fn check(i: &Input<'_>) -> Vec<String> {
    verdict(i).refuse
}

/// The guards' reasons, with a handover's waived ones apart.
pub fn verdict(i: &Input<'_>) -> Verdict {
    let mut out = Vec::new();
    let mut waived = Vec::new();
    let replica_name = |src: &str| crate::zfs::names::rebase(src, i.root, i.target);
    // Shrinking of one dataset: waived in a handover when the dataset and
    // its replica share a snapshot.
    let same_lineage = |name: &str| {
        let (Some(d), Some(r)) = (
            i.source.datasets.get(name),
            i.receiver.datasets.get(&replica_name(name)),
        ) else {
            return false;
        };
        d.snapshots
            .iter()
            .any(|s| r.snapshots.iter().any(|x| x.guid == s.guid))
    };
    let mut shrink = |out: &mut Vec<String>, name: &str, why: String| {
        if i.handover && same_lineage(name) {
            waived.push(why);
        } else {
            out.push(why);
        }
    };
    for (name, d) in &i.source.datasets {
        let Some(r) = i.receiver.datasets.get(&replica_name(name)) else {
            continue;
        };
        if let Some(was) = i.last.and_then(|l| l.datasets.get(name))
            && still_accepted(d, was, i.t)
        {
            continue;
        }
        if d.referenced <= SLACK && r.referenced > SLACK {
            shrink(
                &mut out,
                name,
                format!(
                    "{name} is empty ({}) while its replica on {} holds {}",
                    human_bytes(d.referenced),
                    i.peer,
                    human_bytes(r.referenced)
                ),
            );
        } else if smaller(d.referenced, r.referenced, i.t.min_size_ratio) {
            shrink(
                &mut out,
                name,
                format!(
                    "{name} holds {}, its replica on {} {} (ratio {:.2} < min_size_ratio {})",
                    human_bytes(d.referenced),
                    i.peer,
                    human_bytes(r.referenced),
                    ratio(d.referenced, r.referenced),
                    i.t.min_size_ratio
                ),
            );
        }
        if name == i.root && smaller(d.used, r.used, i.t.min_size_ratio) {
            // An interrupted receive's partial state counts in the
            // receiver's `used`, and the listing cannot tell how much: say
            // where it is. (A master discards its own when it becomes
            // master; one left from an earlier master's stream, on a third
            // node, is the operator's to judge.)
            let partial: Vec<&str> = i
                .receiver
                .datasets
                .values()
                .filter(|x| x.resume_token.is_some())
                .map(|x| x.name.as_str())
                .collect();
            let partial = if partial.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} holds the partial state of an interrupted receive in {}, counted in its `used` (if its stream can no longer complete, `zfs receive -A` there discards it)",
                    i.peer,
                    partial.join(", ")
                )
            };
            shrink(
                &mut out,
                name,
                format!(
                    "pool {name} uses {} in all, its replica on {} {} (ratio {:.2} < min_size_ratio {}){partial}",
                    human_bytes(d.used),
                    i.peer,
                    human_bytes(r.used),
                    ratio(d.used, r.used),
                    i.t.min_size_ratio
                ),
            );
        }
    }
    let Some(last) = i.last else {
        return Verdict {
            refuse: out,
            waived,
        };
    };
    match i.source.datasets.get(i.root) {
        Some(root) if root.guid != last.root_guid => out.push(format!(
            "{} has guid {}, the last run recorded {}: the pool (or its root dataset) was recreated",
            i.root, root.guid, last.root_guid
        )),
        _ => {}
    }
    let gone: Vec<&str> = last
        .datasets
        .keys()
        .filter(|n| !i.source.datasets.contains_key(*n))
        .map(|n| n.as_str())
        .collect();
    if !gone.is_empty() {
        out.push(format!(
            "dataset(s) gone since the last run ({}): {}",
            last.time,
            gone.join(", ")
        ));
    }
    let tol = i.t.history_tolerance;
    // What was replicated, when the last run recorded it: the newest
    // snapshots' data (live writes never snapshotted, then deleted, were
    // never the replica's). The pool as a whole: their sum.
    let newest = |name: &str| {
        i.source
            .datasets
            .get(name)
            .map(|d| d.snapshots.last().map_or(0, |s| s.referenced))
    };
    let snapshotted_total = last
        .datasets
        .values()
        .map(|w| w.newest_referenced)
        .sum::<Option<u64>>()
        .map(|before| {
            let now: u64 = last.datasets.keys().filter_map(|n| newest(n)).sum();
            (now, before)
        });
    for (name, was) in &last.datasets {
        if let Some(d) = i.source.datasets.get(name) {
            let (now, before, what) =
                match (name == i.root, snapshotted_total, was.newest_referenced) {
                    (true, Some((now, before)), _) => (now, before, "in all (newest snapshots)"),
                    (true, None, _) => (d.used, was.used, "in all"),
                    (false, _, Some(before)) if !d.snapshots.is_empty() => {
                        (newest(name).unwrap_or(0), before, "(newest snapshot)")
                    }
                    (false, _, _) => (d.referenced, was.referenced, ""),
                };
            if smaller(now, before, 1.0 - tol) {
                shrink(
                    &mut out,
                    name,
                    format!(
                        "{name} shrank from {} to {}{} since the last run ({}), more than history_tolerance {:.0}%",
                        human_bytes(before),
                        human_bytes(now),
                        if what.is_empty() {
                            String::new()
                        } else {
                            format!(" {what}")
                        },
                        last.time,
                        tol * 100.0
                    ),
                );
            }
        }
        let Some(was_r) = was.replica_referenced else {
            continue;
        };
        match i.receiver.datasets.get(&replica_name(name)) {
            None => out.push(format!(
                "the replica of {name} on {} is gone (it held {} after the last run)",
                i.peer,
                human_bytes(was_r)
            )),
            Some(r) => {
                let diff = r.referenced.abs_diff(was_r);
                if diff > SLACK && diff as f64 > tol * was_r as f64 {
                    out.push(format!(
                        "the replica of {name} on {} changed from {} to {} while no replication ran (more than history_tolerance {:.0}%)",
                        i.peer,
                        human_bytes(was_r),
                        human_bytes(r.referenced),
                        tol * 100.0
                    ));
                }
            }
        }
    }
    Verdict {
        refuse: out,
        waived,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::entry_from;
    use crate::zfs::{Dataset, Kind, Snapshot};

    const MIB: u64 = 1024 * 1024;

    fn ds(name: &str, guid: u64, used: u64, referenced: u64) -> Dataset {
        Dataset {
            name: name.into(),
            kind: Kind::Filesystem,
            guid,
            used,
            referenced,
            written: 0,
            resume_token: None,
            encrypted: false,
            snapshots: vec![Snapshot {
                name: "s1".into(),
                guid: guid * 100,
                createtxg: 1,
                creation: 1,
                used: 0,
                referenced,
                written: 0,
                userrefs: 0,
            }],
        }
    }

    fn listing(v: &[(&str, u64, u64, u64)]) -> Listing {
        Listing {
            datasets: v
                .iter()
                .map(|(n, g, u, r)| (n.to_string(), ds(n, *g, *u, *r)))
                .collect(),
            partial: false,
        }
    }

    const T: Thresholds = Thresholds {
        min_size_ratio: 0.5,
        history_tolerance: 0.2,
    };

    fn run(src: &Listing, rcv: &Listing, last: Option<&Entry>) -> Vec<String> {
        check(&Input {
            root: "zpool1",
            target: "zpool1",
            peer: "pve2",
            source: src,
            receiver: rcv,
            last,
            t: T,
            handover: false,
        })
    }

    fn healthy() -> Listing {
        listing(&[
            ("zpool1", 1, 900 * MIB, 100 * 1024),
            ("zpool1/data", 2, 900 * MIB, 800 * MIB),
        ])
    }

    #[test]
    fn same_sizes_pass() {
        let l = healthy();
        assert!(run(&l, &l, None).is_empty());
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &l, &l).unwrap();
        assert!(run(&l, &l, Some(&e)).is_empty());
    }

    #[test]
    fn an_empty_replacement_disk_is_refused() {
        // A new pool under the same name: tiny, other guids.
        let src = listing(&[
            ("zpool1", 9, 400 * 1024, 100 * 1024),
            ("zpool1/data", 8, 100 * 1024, 96 * 1024),
        ]);
        let rcv = healthy();
        let why = run(&src, &rcv, None);
        assert!(
            why.iter().any(|w| w.contains("zpool1/data is empty")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|w| w.contains("pool zpool1 uses 400.0 KiB in all")),
            "{why:?}"
        );
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &rcv, &rcv).unwrap();
        let why = run(&src, &rcv, Some(&e));
        assert!(why.iter().any(|w| w.contains("was recreated")), "{why:?}");
    }

    /// The receiver's `used` counts an interrupted receive's partial state,
    /// which no listing sizes: the refusal says where it is.
    #[test]
    fn a_refusal_names_the_receivers_partial_receive_state() {
        let src = listing(&[
            ("zpool1", 1, 300 * MIB, 100 * 1024),
            ("zpool1/data", 2, 300 * MIB, 300 * MIB),
        ]);
        let mut rcv = listing(&[
            ("zpool1", 1, 900 * MIB, 100 * 1024),
            ("zpool1/data", 2, 900 * MIB, 300 * MIB),
        ]);
        let plain = run(&src, &rcv, None);
        assert!(
            plain.len() == 1 && !plain[0].contains("interrupted"),
            "{plain:?}"
        );
        rcv.datasets.get_mut("zpool1/data").unwrap().resume_token = Some("1-abc".into());
        let why = run(&src, &rcv, None);
        assert!(
            why.len() == 1
                && why[0].contains("pool zpool1 uses 300.0 MiB in all")
                && why[0].contains(
                    "pve2 holds the partial state of an interrupted receive in zpool1/data"
                ),
            "{why:?}"
        );
    }

    /// A big file written after the newest snapshot was never replicated:
    /// deleting it again before the next snapshot shrinks nothing the
    /// replica holds (found by the life test: a handover was refused).
    #[test]
    fn live_data_never_snapshotted_is_not_history() {
        let before = healthy();
        let mut with_live = before.clone();
        for (n, extra) in [("zpool1", 500 * MIB), ("zpool1/data", 500 * MIB)] {
            let d = with_live.datasets.get_mut(n).unwrap();
            d.used += extra;
            d.referenced += extra;
        }
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &with_live, &before).unwrap();
        // The live data is gone again; the snapshots are as they were.
        assert!(run(&before, &before, Some(&e)).is_empty());
        // A history written before this field existed: compared as before.
        let mut old = e.clone();
        for s in old.datasets.values_mut() {
            s.newest_referenced = None;
        }
        assert!(!run(&before, &before, Some(&old)).is_empty());
    }

    /// Deletes not yet in any snapshot, accepted by the operator: once a
    /// snapshot holds them, the history does not refuse them again.
    #[test]
    fn an_accepted_shrink_is_not_refused_again_when_snapshotted() {
        let before = healthy();
        let mut live = before.clone();
        let d = live.datasets.get_mut("zpool1/data").unwrap();
        d.referenced = 300 * MIB;
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &live, &before).unwrap();
        let mut snapshotted = live.clone();
        let d = snapshotted.datasets.get_mut("zpool1/data").unwrap();
        d.snapshots[0].referenced = 300 * MIB;
        d.snapshots[0].guid = 999;
        assert!(!run(&snapshotted, &before, Some(&e)).is_empty());
        let accepted = e.accepting_live();
        let why = run(&snapshotted, &before, Some(&accepted));
        assert!(
            why.iter().all(|w| !w.contains("since the last run")),
            "{why:?}"
        );
    }

    /// Deletes not yet in any snapshot, accepted by the operator while
    /// nothing could be sent: the acceptance lasts until a transfer has
    /// brought the replica down (found by the life test: a planned
    /// migration's handover was refused after an accepted shrink, and the
    /// new master started without the last writes).
    #[test]
    fn an_acceptance_lasts_until_it_is_replicated() {
        let before = healthy();
        let mut live = before.clone();
        live.datasets.get_mut("zpool1/data").unwrap().referenced = 300 * MIB;
        let first = entry_from("t".into(), "pve2", "zpool1", "zpool1", &before, &before).unwrap();
        assert!(
            run(&live, &before, Some(&first))
                .iter()
                .any(|w| w.contains("min_size_ratio"))
        );
        // The accepting run: nothing new to send, the replica unchanged.
        let mut accepted = entry_from("t".into(), "pve2", "zpool1", "zpool1", &live, &before)
            .unwrap()
            .accepting_live();
        mark_acceptance(&mut accepted, "zpool1", Some(&first), true, T);
        assert!(accepted.datasets["zpool1/data"].accepted);
        assert!(
            !accepted.datasets["zpool1"].accepted,
            "the root did not shrink"
        );
        // Later runs (a handover's included) pass, and carry the mark on.
        assert_eq!(run(&live, &before, Some(&accepted)), Vec::<String>::new());
        let mut next = entry_from("t".into(), "pve2", "zpool1", "zpool1", &live, &before).unwrap();
        mark_acceptance(&mut next, "zpool1", Some(&accepted), false, T);
        assert!(next.datasets["zpool1/data"].accepted);
        // A further shrink beyond the tolerance is refused again.
        let mut less = live.clone();
        less.datasets.get_mut("zpool1/data").unwrap().referenced = 100 * MIB;
        assert!(!run(&less, &before, Some(&next)).is_empty());
        // So is a dataset recreated under the same name (no shared snapshot).
        let mut other = live.clone();
        other.datasets.get_mut("zpool1/data").unwrap().snapshots[0].guid = 4242;
        assert!(!run(&other, &before, Some(&next)).is_empty());
        // Once replicated, the mark is gone: the guard is whole again.
        let mut done = entry_from("t".into(), "pve2", "zpool1", "zpool1", &live, &live).unwrap();
        mark_acceptance(&mut done, "zpool1", Some(&next), false, T);
        assert!(!done.datasets["zpool1/data"].accepted);
        assert!(!run(&live, &before, Some(&done)).is_empty());
        // A run without acceptance never marks anything.
        let mut plain = entry_from("t".into(), "pve2", "zpool1", "zpool1", &live, &before).unwrap();
        mark_acceptance(&mut plain, "zpool1", Some(&first), false, T);
        assert!(plain.datasets.values().all(|s| !s.accepted));
    }

    /// A planned migration's handover sends what the users left, a big
    /// delete included, when the dataset is the same one (it shares a
    /// snapshot with its replica), and says so; a replaced disk is refused
    /// as always (found by the life test: a file moved over a big one just
    /// before a migration left the new master serving the old data).
    #[test]
    fn a_handover_sends_a_same_dataset_shrink_and_logs_it() {
        let before = healthy();
        let mut live = before.clone();
        live.datasets.get_mut("zpool1/data").unwrap().referenced = 100 * 1024;
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &before, &before).unwrap();
        let input = |src, last, handover| Input {
            root: "zpool1",
            target: "zpool1",
            peer: "pve2",
            source: src,
            receiver: &before,
            last,
            t: T,
            handover,
        };
        // A timer run refuses it.
        assert!(!verdict(&input(&live, Some(&e), false)).refuse.is_empty());
        // A handover sends it, with the reason logged.
        let v = verdict(&input(&live, Some(&e), true));
        assert_eq!(v.refuse, Vec::<String>::new());
        assert!(
            v.waived.iter().any(|w| w.contains("zpool1/data is empty")),
            "{v:?}"
        );
        // A replaced disk shares no snapshot: refused, handover or not.
        let replaced = listing(&[
            ("zpool1", 9, 400 * 1024, 100 * 1024),
            ("zpool1/data", 8, 100 * 1024, 96 * 1024),
        ]);
        let v = verdict(&input(&replaced, None, true));
        assert!(
            v.refuse.iter().any(|w| w.contains("zpool1/data is empty")),
            "{v:?}"
        );
        assert!(v.waived.is_empty(), "{v:?}");
        let v = verdict(&input(&replaced, Some(&e), true));
        assert!(
            v.refuse.iter().any(|w| w.contains("was recreated")),
            "{v:?}"
        );
    }

    #[test]
    fn shrink_beyond_tolerance_and_gone_datasets() {
        let before = healthy();
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &before, &before).unwrap();
        // 30% smaller on the source; the replica unchanged.
        let src = listing(&[
            ("zpool1", 1, 630 * MIB, 100 * 1024),
            ("zpool1/data", 2, 630 * MIB, 560 * MIB),
        ]);
        let why = run(&src, &before, Some(&e));
        assert!(
            why.iter()
                .any(|w| w.contains("zpool1/data shrank from 800.0 MiB to 560.0 MiB")),
            "{why:?}"
        );
        assert!(
            why.iter().any(|w| w
                .contains("zpool1 shrank from 800.1 MiB to 560.1 MiB in all (newest snapshots)")),
            "{why:?}"
        );
        // 10% smaller: within tolerance.
        let src = listing(&[
            ("zpool1", 1, 810 * MIB, 100 * 1024),
            ("zpool1/data", 2, 810 * MIB, 720 * MIB),
        ]);
        assert!(run(&src, &before, Some(&e)).is_empty());
        // A dataset destroyed on the source.
        let src = listing(&[("zpool1", 1, 900 * MIB, 100 * 1024)]);
        let why = run(&src, &before, Some(&e));
        assert!(
            why.iter()
                .any(|w| w.contains("gone since the last run") && w.contains("zpool1/data")),
            "{why:?}"
        );
    }

    #[test]
    fn a_replica_changed_behind_our_back() {
        let before = healthy();
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &before, &before).unwrap();
        let rcv = listing(&[
            ("zpool1", 1, 900 * MIB, 100 * 1024),
            ("zpool1/data", 2, 900 * MIB, 300 * MIB),
        ]);
        let why = run(&before, &rcv, Some(&e));
        assert!(
            why.iter().any(|w| w.contains(
                "the replica of zpool1/data on pve2 changed from 800.0 MiB to 300.0 MiB"
            )),
            "{why:?}"
        );
        let rcv = listing(&[("zpool1", 1, 900 * MIB, 100 * 1024)]);
        let why = run(&before, &rcv, Some(&e));
        assert!(
            why.iter()
                .any(|w| w.contains("the replica of zpool1/data on pve2 is gone")),
            "{why:?}"
        );
    }

    #[test]
    fn snapshot_retention_differences_are_not_shrinking() {
        // The standby still holds snapshots the master has pruned: its
        // datasets use more, their live data is the same.
        let src = listing(&[
            ("zpool1", 1, 900 * MIB, 100 * 1024),
            ("zpool1/data", 2, 700 * MIB, 600 * MIB),
        ]);
        let rcv = listing(&[
            ("zpool1", 1, 1100 * MIB, 100 * 1024),
            ("zpool1/data", 2, 1000 * MIB, 600 * MIB),
        ]);
        assert!(run(&src, &rcv, None).is_empty());
    }

    #[test]
    fn small_datasets_are_not_noise() {
        // 300 KiB -> 100 KiB is a big ratio but no real data.
        let before = listing(&[("zpool1", 1, 300 * 1024, 300 * 1024)]);
        let now = listing(&[("zpool1", 1, 100 * 1024, 100 * 1024)]);
        let e = entry_from("t".into(), "pve2", "zpool1", "zpool1", &before, &before).unwrap();
        assert!(run(&now, &before, Some(&e)).is_empty());
    }
}
