//! Divergence, kept and resolved explicitly. After an unplanned failover the
//! old master holds snapshots and writes the new master never received. The
//! planner refuses such datasets; `resolve DATASET --keep-divergent` is the
//! operator's way out, and this module plans it, purely:
//!
//! 1. capture: a snapshot of the receiver's divergent state (unsnapshotted
//!    writes included), held with [`crate::quarantine::HOLD_TAG`];
//! 2. set aside under `<target root>/zfs-nfs-replica-quarantine/<time>/`,
//!    mounted read-only below `<state dir>/quarantine/`: a child dataset is
//!    renamed there (with everything below it); the pool's root cannot be
//!    renamed, so its divergent snapshots are copied there instead;
//! 3. bring the live dataset back to the newest common snapshot: a child is
//!    recreated as a clone of that snapshot and promoted (the snapshots up to
//!    it, guids and holds included, come back to the live name; the set-aside
//!    copy keeps only what came after); the root is rolled back once its copy
//!    exists (the only destructive step, and only of what was just copied).
//!
//! The next run then sends incrementally from the common snapshot. Nothing
//! here is automatic: only the `resolve` command runs these steps.

use std::collections::BTreeSet;

use crate::plan::{self, SnapRef, join, standing};
use crate::step::{Step, step};
use crate::units::human_bytes;
use crate::zfs::names::is_at_or_below;
use crate::zfs::{Dataset, Kind, Listing, Op};

/// How [`plan_resolve`]'s answer starts when the receiver agrees with the
/// source (an earlier resolve, of this dataset or a parent, already set
/// its divergence aside): `resolve` then succeeds, doing nothing.
pub const NOTHING_TO_RESOLVE: &str = "nothing to resolve";

use crate::quarantine::{HOLD_TAG, QUARANTINE, container};

/// How one receiver dataset stands against the source.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub target: String,
    pub source: String,
    /// Absent on the source: kept by every run, moved only with its parent.
    pub source_exists: bool,
    pub common: Option<SnapRef>,
    pub source_newer: Vec<SnapRef>,
    pub receiver_newer: Vec<SnapRef>,
    /// Unsnapshotted writes on the receiver since its newest snapshot.
    pub written: u64,
    pub referenced: u64,
    pub receiver_snapshots: usize,
    /// By the one divergence rule ([`plan::diverges`]).
    pub holds_more: bool,
}

impl Evidence {
    /// Does the receiver hold something the source does not? (A dataset
    /// the source lacks is kept, never resolved.)
    pub fn diverged(&self) -> bool {
        self.source_exists && self.holds_more
    }

    pub fn kind(&self) -> &'static str {
        match (&self.common, self.receiver_newer.is_empty()) {
            (None, _) => "no-common-snapshot",
            (Some(_), false) => "diverged",
            (Some(_), true) => "receiver-modified",
        }
    }

    /// The evidence, for people: one line per fact.
    pub fn lines(&self, source_node: &str, receiver_node: &str) -> Vec<String> {
        let list = |v: &[SnapRef]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|s| format!("@{} ({})", s.name, human_bytes(s.written)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut out = Vec::new();
        match &self.common {
            Some(c) => out.push(format!(
                "common snapshot: @{} (guid {}, {})",
                c.name,
                c.guid,
                time(c.creation)
            )),
            None => out.push(format!(
                "no snapshot in common; {receiver_node} holds {} in {} snapshot(s)",
                human_bytes(self.referenced),
                self.receiver_snapshots
            )),
        }
        out.push(format!(
            "only on {receiver_node} (receiver), newer: {}",
            list(&self.receiver_newer)
        ));
        out.push(format!(
            "unsnapshotted writes on {receiver_node}: {}",
            human_bytes(self.written)
        ));
        out.push(format!(
            "only on {source_node} (source), newer: {}",
            list(&self.source_newer)
        ));
        out
    }
}

fn time(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| epoch.to_string())
}

/// The evidence for every receiver dataset at or below `target`, parents first.
pub fn evidence(
    src: &Listing,
    src_root: &str,
    dst: &Listing,
    dst_root: &str,
    target: &str,
) -> Vec<Evidence> {
    dst.datasets
        .values()
        .filter(|d| is_at_or_below(&d.name, target))
        .map(|d| {
            let source = crate::zfs::names::rebase(&d.name, dst_root, src_root);
            let s = src.datasets.get(&source);
            let st = s.map(|s| standing(s, d));
            let holds_more = st
                .as_ref()
                .is_some_and(|st| plan::diverges(st, d.snapshots.len(), d.written, d.referenced));
            Evidence {
                holds_more,
                target: d.name.clone(),
                source,
                source_exists: s.is_some(),
                common: st.as_ref().and_then(|x| x.common.map(SnapRef::from)),
                source_newer: st
                    .as_ref()
                    .map(|x| x.source_newer.clone())
                    .unwrap_or_default(),
                receiver_newer: st.map(|x| x.receiver_newer).unwrap_or_default(),
                written: d.written,
                referenced: d.referenced,
                receiver_snapshots: d.snapshots.len(),
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct ResolvePlan {
    /// The receiver dataset the operator named.
    pub target: String,
    /// `<root>/zfs-nfs-replica-quarantine/<time>`: where it all goes.
    pub quarantine: String,
    /// Receiver dataset -> its set-aside copy.
    pub moved: Vec<(String, String)>,
    /// The diverged datasets' evidence.
    pub evidence: Vec<Evidence>,
    pub steps: Vec<Step>,
    /// Datasets that are not recreated from a common snapshot: the next run
    /// sends them in full.
    pub sent_in_full: Vec<String>,
}

pub struct Request<'a> {
    pub src: &'a Listing,
    pub src_root: &'a str,
    pub dst: &'a Listing,
    pub dst_root: &'a str,
    /// The dataset the operator named, by its source name.
    pub dataset: &'a str,
    /// Distinguishes this resolve's quarantine and capture snapshot.
    pub stamp: &'a str,
    /// Where the quarantine container mounts (`<state dir>/quarantine/<target root>`).
    pub mountpoint: &'a str,
    /// Whether the quarantine container exists already (from an earlier resolve).
    pub container_exists: bool,
}

/// Plan a resolve. Errors say why there is nothing to do or why it cannot
/// be done safely; nothing has run then.
pub fn plan_resolve(r: &Request<'_>) -> Result<ResolvePlan, String> {
    let rel = if r.dataset == r.src_root {
        ""
    } else {
        r.dataset
            .strip_prefix(r.src_root)
            .and_then(|x| x.strip_prefix('/'))
            .ok_or_else(|| format!("{} is not below the pool {}", r.dataset, r.src_root))?
    };
    let target = join(r.dst_root, rel);
    if is_at_or_below(&target, &container(r.dst_root)) {
        return Err(format!("{target} is in the quarantine itself"));
    }
    if !r.dst.datasets.contains_key(&target) {
        return Err(format!(
            "{target} does not exist on the receiver: nothing to resolve"
        ));
    }
    let ev = evidence(r.src, r.src_root, r.dst, r.dst_root, &target);
    let diverged: Vec<&Evidence> = ev.iter().filter(|e| e.diverged()).collect();
    if diverged.is_empty() {
        return Err(format!(
            "{NOTHING_TO_RESOLVE}: {target} and every dataset below it agree with the source (no snapshot or write only on the receiver)"
        ));
    }
    let by_target = |n: &str| ev.iter().find(|e| e.target == n);
    let cap = format!("{QUARANTINE}_{}", r.stamp);
    let top = container(r.dst_root);
    let qt = format!("{top}/{}", r.stamp);
    let qname = |t: &str| crate::zfs::names::rebase(t, r.dst_root, &qt);
    let mut plan = ResolvePlan {
        target: target.clone(),
        quarantine: qt.clone(),
        moved: Vec::new(),
        evidence: diverged.iter().map(|e| (*e).clone()).collect(),
        steps: Vec::new(),
        sent_in_full: Vec::new(),
    };
    if !r.container_exists {
        plan.steps.push(step(
            Op::CreateContainer {
                dataset: top.clone(),
                mountpoint: Some(r.mountpoint.to_string()),
            },
            format!("the quarantine, mounted below {}", r.mountpoint),
        ));
    }
    let root = r.dst_root;
    let root_diverged = target == root && by_target(root).is_some_and(|e| e.diverged());
    let mut quarantined: Vec<String> = Vec::new();
    if root_diverged {
        let e = by_target(root).expect("listed");
        let Some(common) = &e.common else {
            return Err(format!(
                "the pool's root {root} has no snapshot in common with the source: a root cannot be set aside; \
                 this is a different pool (look at it by hand: zfs list -t all -r {root})"
            ));
        };
        let d = &r.dst.datasets[root];
        plan.steps.push(step(
            Op::Snapshot {
                snapshot: format!("{root}@{cap}"),
                recursive: false,
            },
            "capture the root's unsnapshotted writes",
        ));
        plan.steps.push(step(
            Op::CopyLocal {
                snapshot: format!("{root}@{}", common.name),
                base: None,
                raw: d.encrypted,
                target: qt.clone(),
            },
            format!(
                "copy the root at the common snapshot @{} ({})",
                common.name,
                human_bytes(d.referenced)
            ),
        ));
        plan.steps.push(step(
            Op::CopyLocal {
                snapshot: format!("{root}@{cap}"),
                base: Some(format!("{root}@{}", common.name)),
                raw: d.encrypted,
                target: qt.clone(),
            },
            "copy the root's divergent snapshots and writes after it",
        ));
        // Held, every divergent snapshot of the copy too: sanoid prunes its
        // own `autosnap_*` snapshots wherever its sections reach, and a
        // pool root's recursive section reaches the quarantine.
        plan.steps.push(step(
            Op::Hold {
                tag: HOLD_TAG.to_string(),
                snapshots: e
                    .receiver_newer
                    .iter()
                    .map(|s| format!("{qt}@{}", s.name))
                    .chain([format!("{qt}@{cap}")])
                    .collect(),
            },
            "hold the copy's snapshots (sanoid never prunes them)",
        ));
        let newer: Vec<String> = e
            .receiver_newer
            .iter()
            .map(|s| format!("@{}", s.name))
            .chain([format!("@{cap}")])
            .collect();
        plan.steps.push(Step {
            op: Op::Rollback {
                snapshot: format!("{root}@{}", common.name),
                destroy_newer: true,
            },
            note: format!(
                "back to @{}: destroys {root}'s {} and {} of unsnapshotted writes, all now copied to {qt}",
                common.name,
                newer.join(", "),
                human_bytes(e.written)
            ),
            destructive: true,
            best_effort: false,
        });
        plan.steps.push(step(
            Op::SetReadonly {
                datasets: vec![root.to_string()],
            },
            "the root is a standby copy again: nothing (not even atime) changes it",
        ));
        // Mounted now, before anything is renamed below it: mounted later,
        // it would cover the children's mounts.
        plan.steps.push(Step {
            op: Op::Mount {
                dataset: qt.clone(),
            },
            note: "readable, read-only".into(),
            destructive: false,
            best_effort: true,
        });
        plan.moved.push((root.to_string(), qt.clone()));
    } else {
        plan.steps.push(step(
            Op::CreateContainer {
                dataset: qt.clone(),
                mountpoint: None,
            },
            "this resolve's quarantine",
        ));
    }
    // The subtrees to set aside: each diverged dataset (not the root) with
    // no diverged ancestor below the root.
    let mut tops: Vec<&Evidence> = Vec::new();
    for e in &diverged {
        if e.target == root {
            continue;
        }
        if tops.iter().any(|t| is_at_or_below(&e.target, &t.target)) {
            continue;
        }
        tops.push(e);
    }
    for t in tops {
        let q = qname(&t.target);
        let subtree: Vec<&Evidence> = ev
            .iter()
            .filter(|e| is_at_or_below(&e.target, &t.target))
            .collect();
        plan.steps.push(step(
            Op::Snapshot {
                snapshot: format!("{}@{cap}", t.target),
                recursive: true,
            },
            "capture unsnapshotted writes (every dataset below too)",
        ));
        plan.steps.push(step(
            Op::HoldRecursive {
                tag: HOLD_TAG.to_string(),
                snapshot: format!("{}@{cap}", t.target),
            },
            "hold the capture snapshots",
        ));
        // Every snapshot that goes to the quarantine with the subtree (those
        // after the common snapshot) is held too: sanoid prunes its own
        // `autosnap_*` snapshots wherever its sections reach, and a pool
        // root's recursive section reaches the quarantine.
        let newer: Vec<String> = subtree
            .iter()
            .flat_map(|e| {
                e.receiver_newer
                    .iter()
                    .map(|s| format!("{}@{}", e.target, s.name))
            })
            .collect();
        if !newer.is_empty() {
            plan.steps.push(step(
                Op::Hold {
                    tag: HOLD_TAG.to_string(),
                    snapshots: newer,
                },
                "hold the divergent snapshots (sanoid never prunes them in the quarantine)",
            ));
        }
        // Free the live paths: the subtree's filesystems are unmounted,
        // deepest first (the recreated datasets take their names and
        // mountpoints; a standby's copies are not mounted anyway).
        for e in subtree.iter().rev() {
            if r.dst
                .datasets
                .get(&e.target)
                .is_some_and(|d| d.kind == Kind::Filesystem)
            {
                plan.steps.push(Step {
                    op: Op::Unmount {
                        dataset: e.target.clone(),
                    },
                    note: "free its mountpoint for the dataset recreated at the common snapshot"
                        .into(),
                    destructive: false,
                    best_effort: false,
                });
            }
        }
        // The quarantine's path to it: containers that are never mounted,
        // so that nothing is created inside a read-only mount.
        let parent_rel = t.target[r.dst_root.len()..]
            .rsplit_once('/')
            .map_or("", |(p, _)| p);
        let mut path = qt.clone();
        for part in parent_rel.split('/').filter(|p| !p.is_empty()) {
            path = format!("{path}/{part}");
            if !plan
                .steps
                .iter()
                .any(|s| matches!(&s.op, Op::CreateContainer { dataset, .. } if *dataset == path))
            {
                plan.steps.push(step(
                    Op::CreateContainer {
                        dataset: path.clone(),
                        mountpoint: None,
                    },
                    "its place in the quarantine",
                ));
            }
        }
        plan.steps.push(step(
            Op::Rename {
                from: t.target.clone(),
                to: q.clone(),
                filesystem: r
                    .dst
                    .datasets
                    .get(&t.target)
                    .is_some_and(|d| d.kind == Kind::Filesystem),
            },
            format!("set {} and everything below it aside", t.target),
        ));
        plan.steps.push(step(
            Op::InheritMountpoint { dataset: q.clone() },
            "mount the set-aside copy in the quarantine, not at the live path",
        ));
        plan.steps.push(step(
            Op::SetReadonly {
                datasets: subtree.iter().map(|e| qname(&e.target)).collect(),
            },
            "keep the set-aside copy as it is",
        ));
        // Recreate, parents first, every dataset that has a common snapshot
        // with the source; below one that cannot be, nothing can.
        let mut not_recreated: BTreeSet<String> = BTreeSet::new();
        for e in &subtree {
            plan.moved.push((e.target.clone(), qname(&e.target)));
            quarantined.push(qname(&e.target));
            let parent_missing = not_recreated.iter().any(|n| is_at_or_below(&e.target, n));
            match (&e.common, parent_missing, e.source_exists) {
                (Some(c), false, true) => {
                    plan.steps.push(step(
                        Op::Clone {
                            snapshot: format!("{}@{}", qname(&e.target), c.name),
                            target: e.target.clone(),
                        },
                        format!("{} again, at the common snapshot @{}", e.target, c.name),
                    ));
                    plan.steps.push(step(
                        Op::Promote {
                            dataset: e.target.clone(),
                        },
                        format!(
                            "{} takes back its snapshots up to @{} (same guids and holds)",
                            e.target, c.name
                        ),
                    ));
                }
                _ => {
                    if e.source_exists {
                        plan.sent_in_full.push(e.target.clone());
                    }
                    not_recreated.insert(e.target.clone());
                }
            }
        }
    }
    for q in &quarantined {
        let is_fs = plan
            .moved
            .iter()
            .find(|(_, m)| m == q)
            .and_then(|(t, _)| r.dst.datasets.get(t))
            .is_some_and(|d: &Dataset| d.kind == Kind::Filesystem);
        if is_fs {
            plan.steps.push(Step {
                op: Op::Mount { dataset: q.clone() },
                note: "readable, read-only".into(),
                destructive: false,
                best_effort: true,
            });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::split_quarantine;
    use crate::testutil::{ds, listing};

    fn req<'a>(src: &'a Listing, dst: &'a Listing, dataset: &'a str) -> Request<'a> {
        Request {
            src,
            src_root: "zpool1",
            dst,
            dst_root: "zpool1",
            dataset,
            stamp: "20261122T170000Z",
            mountpoint: "/var/lib/zfs-nfs-replica/quarantine/zpool1",
            container_exists: false,
        }
    }

    fn shown(p: &ResolvePlan) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| {
                format!(
                    "{}{}{}",
                    if s.destructive { "DESTRUCTIVE " } else { "" },
                    if s.best_effort { "(best effort) " } else { "" },
                    s.op
                )
            })
            .collect()
    }

    const Q: &str = "zpool1/zfs-nfs-replica-quarantine/20261122T170000Z";

    #[test]
    fn a_diverged_child_is_set_aside_and_recreated_from_the_common_snapshot() {
        // Source (new master): s1 then n1. Receiver (old master): s1 then x1,
        // plus writes; its child c is in sync at s1.
        let src = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/a", "s1:11:5 n1:21:9", 0),
            ds("zpool1/a/c", "s1:12:5", 0),
        ]);
        let dst = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/a", "s1:11:5 x1:31:7", 8192),
            ds("zpool1/a/c", "s1:12:5", 0),
        ]);
        let p = plan_resolve(&req(&src, &dst, "zpool1/a")).unwrap();
        assert_eq!(p.quarantine, Q);
        assert_eq!(
            shown(&p),
            vec![
                "zfs create -o canmount=off -o mountpoint=/var/lib/zfs-nfs-replica/quarantine/zpool1 zpool1/zfs-nfs-replica-quarantine".to_string(),
                format!("zfs create -o canmount=off {Q}"),
                "zfs snapshot -r zpool1/a@zfs-nfs-replica-quarantine_20261122T170000Z".into(),
                "zfs hold -r zfs-nfs-replica-quarantine zpool1/a@zfs-nfs-replica-quarantine_20261122T170000Z".into(),
                "zfs hold zfs-nfs-replica-quarantine zpool1/a@x1".into(),
                "zfs unmount zpool1/a/c".into(),
                "zfs unmount zpool1/a".into(),
                format!("zfs rename -u zpool1/a {Q}/a"),
                format!("zfs inherit -r mountpoint {Q}/a"),
                format!("zfs set readonly=on {Q}/a {Q}/a/c"),
                format!("zfs clone -o readonly=on {Q}/a@s1 zpool1/a"),
                "zfs promote zpool1/a".into(),
                format!("zfs clone -o readonly=on {Q}/a/c@s1 zpool1/a/c"),
                "zfs promote zpool1/a/c".into(),
                format!("(best effort) zfs mount {Q}/a"),
                format!("(best effort) zfs mount {Q}/a/c"),
            ]
        );
        assert!(
            p.steps.iter().all(|s| !s.destructive),
            "nothing is destroyed"
        );
        assert_eq!(p.evidence.len(), 1);
        assert_eq!(p.evidence[0].kind(), "diverged");
        let lines = p.evidence[0].lines("pve2", "pve1");
        assert!(
            lines[0].starts_with("common snapshot: @s1 (guid 11, "),
            "{lines:?}"
        );
        assert_eq!(lines[1], "only on pve1 (receiver), newer: @x1 (4.0 KiB)");
        assert_eq!(lines[2], "unsnapshotted writes on pve1: 8.0 KiB");
        assert_eq!(lines[3], "only on pve2 (source), newer: @n1 (4.0 KiB)");
        assert!(p.sent_in_full.is_empty());
    }

    #[test]
    fn a_dataset_two_levels_down_gets_its_place_in_the_quarantine_first() {
        // `resolve zpool1/share/home`: the quarantine's `share` is a
        // container of its own (never mounted), then `home` is renamed
        // into it without a remount (OpenZFS 2.1's `rename -p` made a
        // mounted parent and failed half-way).
        let src = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/share", "s1:11:5", 0),
            ds("zpool1/share/home", "s1:12:5 n1:22:9", 0),
        ]);
        let dst = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/share", "s1:11:5", 0),
            ds("zpool1/share/home", "s1:12:5 x1:32:7", 0),
        ]);
        let p = plan_resolve(&req(&src, &dst, "zpool1/share/home")).unwrap();
        let steps = shown(&p);
        let at = |want: &str| {
            steps
                .iter()
                .position(|s| s == want)
                .unwrap_or_else(|| panic!("{want} missing: {steps:#?}"))
        };
        let container = at(&format!("zfs create -o canmount=off {Q}/share"));
        let unmount = at("zfs unmount zpool1/share/home");
        let rename = at(&format!("zfs rename -u zpool1/share/home {Q}/share/home"));
        let clone = at(&format!(
            "zfs clone -o readonly=on {Q}/share/home@s1 zpool1/share/home"
        ));
        assert!(
            container < rename && unmount < rename && rename < clone,
            "{steps:#?}"
        );
        assert!(!steps.iter().any(|s| s.contains("rename -p")), "{steps:#?}");
    }

    #[test]
    fn a_diverged_root_is_copied_then_rolled_back_and_its_diverged_children_set_aside() {
        let src = listing(vec![
            ds("zpool1", "s1:10:5 n1:20:9", 0),
            ds("zpool1/a", "s1:11:5 n1:21:9", 0),
            ds("zpool1/b", "s1:12:5 n1:22:9", 0),
        ]);
        let dst = listing(vec![
            ds("zpool1", "s1:10:5 x1:30:7", 0),
            ds("zpool1/a", "s1:11:5 x1:31:7", 0),
            ds("zpool1/b", "s1:12:5", 0),
        ]);
        let mut r = req(&src, &dst, "zpool1");
        r.container_exists = true;
        let p = plan_resolve(&r).unwrap();
        let cap = "zfs-nfs-replica-quarantine_20261122T170000Z";
        assert_eq!(
            shown(&p),
            vec![
                format!("zfs snapshot zpool1@{cap}"),
                format!("zfs send -L -c -e zpool1@s1 | zfs receive -u -o readonly=on {Q}"),
                format!(
                    "zfs send -L -c -e -I zpool1@s1 zpool1@{cap} | zfs receive -u -o readonly=on {Q}"
                ),
                format!("zfs hold zfs-nfs-replica-quarantine {Q}@x1 {Q}@{cap}"),
                "DESTRUCTIVE zfs rollback -r zpool1@s1".into(),
                "zfs set readonly=on zpool1".into(),
                format!("(best effort) zfs mount {Q}"),
                format!("zfs snapshot -r zpool1/a@{cap}"),
                format!("zfs hold -r zfs-nfs-replica-quarantine zpool1/a@{cap}"),
                "zfs hold zfs-nfs-replica-quarantine zpool1/a@x1".into(),
                "zfs unmount zpool1/a".into(),
                format!("zfs rename -u zpool1/a {Q}/a"),
                format!("zfs inherit -r mountpoint {Q}/a"),
                format!("zfs set readonly=on {Q}/a"),
                format!("zfs clone -o readonly=on {Q}/a@s1 zpool1/a"),
                "zfs promote zpool1/a".into(),
                format!("(best effort) zfs mount {Q}/a"),
            ],
            "zpool1/b is in sync and stays where it is"
        );
        let rb = p.steps.iter().find(|s| s.destructive).unwrap();
        assert!(
            rb.note.contains("@x1") && rb.note.contains(Q),
            "{}",
            rb.note
        );
    }

    #[test]
    fn no_common_snapshot_below_is_set_aside_and_sent_in_full() {
        let src = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/a", "s2:40:9", 0),
            ds("zpool1/a/c", "s2:41:9", 0),
        ]);
        let dst = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/a", "old:90:7", 0),
            ds("zpool1/a/c", "old:91:7", 0),
        ]);
        let p = plan_resolve(&req(&src, &dst, "zpool1/a")).unwrap();
        assert!(
            !shown(&p).iter().any(|s| s.contains("clone")),
            "{:?}",
            shown(&p)
        );
        assert_eq!(p.sent_in_full, ["zpool1/a", "zpool1/a/c"]);
        assert_eq!(p.evidence[0].kind(), "no-common-snapshot");
    }

    #[test]
    fn refusals() {
        let src = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/a", "s1:11:5", 0),
        ]);
        let same = src.clone();
        let e = plan_resolve(&req(&src, &same, "zpool1/a")).unwrap_err();
        assert!(e.starts_with("nothing to resolve"), "{e}");
        let e = plan_resolve(&req(&src, &same, "zpool2/a")).unwrap_err();
        assert!(e.contains("not below the pool"), "{e}");
        let e = plan_resolve(&req(&src, &same, "zpool1/zz")).unwrap_err();
        assert!(e.contains("does not exist on the receiver"), "{e}");
        let other = listing(vec![
            ds("zpool1", "z:99:5", 0),
            ds("zpool1/a", "s1:11:5", 0),
        ]);
        let e = plan_resolve(&req(&src, &other, "zpool1")).unwrap_err();
        assert!(
            e.contains("no snapshot in common") && e.contains("root"),
            "{e}"
        );
        // Writes only (receiver-modified) are divergence too.
        let written = listing(vec![
            ds("zpool1", "s1:10:5", 0),
            ds("zpool1/a", "s1:11:5", 5000),
        ]);
        let p = plan_resolve(&req(&src, &written, "zpool1/a")).unwrap();
        assert_eq!(p.evidence[0].kind(), "receiver-modified");
    }

    #[test]
    fn the_quarantine_is_taken_out_of_listings() {
        let mut l = listing(vec![
            ds("zpool1", "", 0),
            ds("zpool1/a", "", 0),
            ds("zpool1/zfs-nfs-replica-quarantine", "", 0),
            ds("zpool1/zfs-nfs-replica-quarantine/T/a", "", 0),
            ds("zpool1/zfs-nfs-replica-quarantine-not", "", 0),
        ]);
        let q = split_quarantine(&mut l, "zpool1");
        assert_eq!(q.len(), 2);
        assert_eq!(
            l.datasets.keys().cloned().collect::<Vec<_>>(),
            [
                "zpool1",
                "zpool1/a",
                "zpool1/zfs-nfs-replica-quarantine-not"
            ]
        );
    }

    #[test]
    fn the_pools_used_leaves_the_quarantine_out() {
        let mut l = listing(vec![
            ds("zpool1", "", 0),
            ds("zpool1/a", "", 0),
            ds("zpool1/zfs-nfs-replica-quarantine", "", 0),
        ]);
        l.datasets.get_mut("zpool1").unwrap().used = 80 << 20;
        l.datasets
            .get_mut("zpool1/zfs-nfs-replica-quarantine")
            .unwrap()
            .used = 70 << 20;
        split_quarantine(&mut l, "zpool1");
        assert_eq!(l.datasets["zpool1"].used, 10 << 20);
        // No quarantine: nothing changes.
        let mut l = listing(vec![ds("zpool1", "", 0)]);
        l.datasets.get_mut("zpool1").unwrap().used = 5;
        split_quarantine(&mut l, "zpool1");
        assert_eq!(l.datasets["zpool1"].used, 5);
    }
}
