//! The pure planner: two listings in, one decision per dataset out. No I/O.
//!
//! Snapshots are matched by guid (it survives send/recv; names and times do
//! not prove identity). Every rule here has a row in the table tests below.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::zfs::{Dataset, Kind, Listing, Snapshot};

/// A snapshot as evidence: enough to show an operator what is where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapRef {
    pub name: String,
    pub guid: u64,
    pub creation: i64,
    pub written: u64,
}

impl From<&Snapshot> for SnapRef {
    fn from(s: &Snapshot) -> Self {
        SnapRef {
            name: s.name.to_string(),
            guid: s.guid,
            creation: s.creation,
            written: s.written,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The receiver has snapshots newer than the newest common one.
    Diverged {
        common: SnapRef,
        source_newer: Vec<SnapRef>,
        receiver_newer: Vec<SnapRef>,
    },
    /// No snapshot in common, and the receiver holds data.
    NoCommonSnapshot {
        receiver_snapshots: Vec<SnapRef>,
        receiver_referenced: u64,
    },
    /// The receiver exists without snapshots and looks empty; overwriting it
    /// (`recv -F`) is allowed only when the operator asks for it.
    ReceiverExistsEmpty { receiver_referenced: u64 },
    /// Unsnapshotted writes on the receiver since the common snapshot.
    /// `lost_base`: a newer snapshot the source still holds for this peer
    /// (the last run's common base) that the receiver no longer has: it was
    /// deleted there, and the "writes" are its data.
    ReceiverModified {
        common: SnapRef,
        written: u64,
        lost_base: Option<SnapRef>,
    },
    /// The source is encrypted but the receiver copy is not a raw one.
    RawMismatch,
    /// Filesystem on one side, volume on the other.
    KindMismatch { source: Kind, receiver: Kind },
}

impl Conflict {
    pub fn kind(&self) -> &'static str {
        match self {
            Conflict::Diverged { .. } => "diverged",
            Conflict::NoCommonSnapshot { .. } => "no-common-snapshot",
            Conflict::ReceiverExistsEmpty { .. } => "receiver-exists-empty",
            Conflict::ReceiverModified { .. } => "receiver-modified",
            Conflict::RawMismatch => "raw-mismatch",
            Conflict::KindMismatch { .. } => "kind-mismatch",
        }
    }
}

fn names(v: &[SnapRef]) -> String {
    const SHOW: usize = 5;
    let mut s: Vec<String> = v
        .iter()
        .take(SHOW)
        .map(|x| format!("@{} ({} B)", x.name, x.written))
        .collect();
    if v.len() > SHOW {
        s.push(format!("... {} more", v.len() - SHOW));
    }
    s.join(", ")
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::Diverged {
                common,
                source_newer,
                receiver_newer,
            } => write!(
                f,
                "diverged after common snapshot @{} (guid {}): receiver-only newer snapshots: {}; source newer snapshots: {}",
                common.name,
                common.guid,
                names(receiver_newer),
                if source_newer.is_empty() {
                    "none".to_string()
                } else {
                    names(source_newer)
                }
            ),
            Conflict::NoCommonSnapshot {
                receiver_snapshots,
                receiver_referenced,
            } => write!(
                f,
                "no common snapshot; the receiver holds {receiver_referenced} B referenced and {} snapshot(s){}{}",
                receiver_snapshots.len(),
                if receiver_snapshots.is_empty() {
                    ""
                } else {
                    ": "
                },
                names(receiver_snapshots)
            ),
            Conflict::ReceiverExistsEmpty {
                receiver_referenced,
            } => write!(
                f,
                "the receiver dataset exists without snapshots ({receiver_referenced} B referenced); \
                 overwriting it needs `recv -F`: rerun with --overwrite-empty-target if it really holds nothing"
            ),
            Conflict::ReceiverModified {
                common,
                written: _,
                lost_base: Some(lost),
            } => write!(
                f,
                "the receiver no longer has @{} (guid {}), the common snapshot of the last run (this node still holds it for the receiver): it was deleted there, so the receiver now differs from @{}, its newest; nothing was sent (look at it, then `zfs-nfs-replica resolve`)",
                lost.name, lost.guid, common.name
            ),
            Conflict::ReceiverModified {
                common, written, ..
            } => write!(
                f,
                "the receiver was modified after @{} ({written} B written since, and `zfs diff` or its stream shows real changes); refusing to roll it back",
                common.name
            ),
            Conflict::RawMismatch => write!(
                f,
                "the source is encrypted (sent raw) but the receiver copy is not encrypted: raw and non-raw streams cannot be mixed"
            ),
            Conflict::KindMismatch { source, receiver } => write!(
                f,
                "the source is a {} but the receiver is a {}",
                source.as_str(),
                receiver.as_str()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    UpToDate {
        snapshot: SnapRef,
    },
    /// The source has no snapshot yet: nothing can be sent.
    NoSnapshots,
    Excluded,
    /// Absent on the receiver: a full stream of the oldest snapshot, then `-I`
    /// up to the newest. `force` (`recv -F`) only replaces an existing empty
    /// dataset, and only when the operator asked.
    Full {
        first: SnapRef,
        last: SnapRef,
        raw: bool,
        force: bool,
    },
    Incremental {
        base: SnapRef,
        last: SnapRef,
        count: usize,
        raw: bool,
        /// The receiver changed after `base` in nothing the source lacks
        /// (access times, a pool import's log claim: proven, see
        /// [`Options::noise`]): it is rolled back to `base` first.
        discard: Option<Discard>,
    },
    /// Continue an interrupted receive.
    Resume {
        token: String,
    },
    Conflict(Conflict),
    /// An ancestor cannot be replicated this run.
    Blocked {
        by: String,
        reason: String,
    },
}

impl Action {
    /// The snapshot both sides will share once this action succeeds.
    pub fn final_snapshot(&self) -> Option<&SnapRef> {
        match self {
            Action::UpToDate { snapshot } => Some(snapshot),
            Action::Full { last, .. } | Action::Incremental { last, .. } => Some(last),
            _ => None,
        }
    }

    pub fn is_transfer(&self) -> bool {
        matches!(
            self,
            Action::Full { .. } | Action::Incremental { .. } | Action::Resume { .. }
        )
    }

    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Action::Full { force: true, .. }
                | Action::Incremental {
                    discard: Some(_),
                    ..
                }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Path below the pool root ("" for the root itself).
    pub rel: String,
    pub source: String,
    pub target: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Parents before children.
    pub items: Vec<Item>,
    /// Datasets on the receiver that the source no longer has: reported only.
    pub receiver_only: Vec<String>,
}

impl Plan {
    pub fn conflicts(&self) -> impl Iterator<Item = (&Item, &Conflict)> {
        self.items.iter().filter_map(|i| match &i.action {
            Action::Conflict(c) => Some((i, c)),
            _ => None,
        })
    }
}

/// What an incremental rolls back first, and why that loses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discard {
    /// The receiver's `written` since the base.
    pub written: u64,
    /// How it was proven that no file or block changed.
    pub evidence: String,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allow `recv -F` over a receiver dataset that has no snapshots and at
    /// most `empty_max_referenced` bytes (a new pool's root, typically).
    pub overwrite_empty: bool,
    pub empty_max_referenced: u64,
    /// Full source names of excluded subtrees.
    pub exclude: Vec<String>,
    /// Receiver datasets (full names) whose changes since the common
    /// snapshot were checked to change no file and no block (the engine
    /// asks `zfs diff`, or a volume's stream), with the evidence: they are
    /// rolled back and receive, where they would be refused.
    pub noise: std::collections::BTreeMap<String, String>,
}

/// An empty filesystem references its metadata only (tens of KiB); anything
/// above this counts as data.
pub const DEFAULT_EMPTY_MAX_REFERENCED: u64 = 1024 * 1024;

pub fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

fn rel_of<'a>(root: &str, name: &'a str) -> Option<&'a str> {
    if name == root {
        Some("")
    } else {
        name.strip_prefix(root)?.strip_prefix('/')
    }
}

fn parent(rel: &str) -> Option<&str> {
    if rel.is_empty() {
        None
    } else {
        Some(rel.rsplit_once('/').map_or("", |p| p.0))
    }
}

/// Plan one pool: `source` lists `src_root` and below, `receiver` lists `dst_root` and below.
pub fn plan(
    source: &Listing,
    src_root: &str,
    receiver: &Listing,
    dst_root: &str,
    opts: &Options,
) -> Plan {
    let excluded = |full: &str| {
        opts.exclude
            .iter()
            .any(|e| crate::zfs::names::is_at_or_below(full, e))
    };
    let dst: HashMap<&str, &Dataset> = receiver
        .datasets
        .values()
        .filter_map(|d| rel_of(dst_root, &d.name).map(|r| (r, d)))
        .collect();
    let mut src_rels: BTreeSet<&str> = BTreeSet::new();
    // Rel paths whose descendants cannot proceed, with the reason.
    let mut blocking: HashMap<String, (String, String)> = HashMap::new();
    let mut items = Vec::new();

    // BTreeMap order puts every parent before its children.
    for d in source.datasets.values() {
        let Some(rel) = rel_of(src_root, &d.name) else {
            continue;
        };
        src_rels.insert(rel);
        let target = join(dst_root, rel);
        let item = |action: Action| Item {
            rel: rel.to_string(),
            source: d.name.clone(),
            target: target.clone(),
            action,
        };
        if excluded(&d.name) {
            items.push(item(Action::Excluded));
            continue;
        }
        if let Some((by, reason)) = parent(rel).and_then(|p| blocking.get(p)).cloned() {
            blocking.insert(rel.to_string(), (by.clone(), reason.clone()));
            items.push(item(Action::Blocked { by, reason }));
            continue;
        }
        let receiver = dst.get(rel).copied();
        let action = decide(d, receiver, opts, opts.noise.get(&target));
        let block_reason = match &action {
            Action::Conflict(c) => Some(format!("{} on {}", c.kind(), d.name)),
            Action::NoSnapshots if receiver.is_none() => Some(format!(
                "{} has no snapshot to send and is absent on the receiver",
                d.name
            )),
            Action::Resume { .. } => Some(format!(
                "{} is finishing an interrupted receive first",
                d.name
            )),
            _ => None,
        };
        if let Some(reason) = block_reason {
            // Children that already exist on the receiver do not depend on the
            // parent's data, but a conflict means the operator must look at the
            // whole subtree, so all of it waits.
            blocking.insert(rel.to_string(), (d.name.clone(), reason));
        }
        items.push(item(action));
    }

    let receiver_only = dst
        .iter()
        .filter(|(rel, d)| {
            !src_rels.contains(*rel) && !excluded(&join(src_root, rel)) && !d.name.contains('%')
        })
        .map(|(_, d)| d.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Plan {
        items,
        receiver_only,
    }
}

/// Where a receiver dataset stands against its source, by guid: the newest
/// snapshot both have, and what each side has after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing<'a> {
    /// The newest common snapshot, as the source lists it.
    pub common: Option<&'a Snapshot>,
    pub source_newer: Vec<SnapRef>,
    pub receiver_newer: Vec<SnapRef>,
}

/// The one rule for "the receiver holds something the source does not",
/// used by `run` (as a conflict), `diverged`, `resolve` and `adopt`: with a
/// common snapshot, snapshots after it or writes since it (proven noise
/// aside, which only `run` asks about); without one, anything but an empty
/// receiver.
pub fn diverges(
    st: &Standing<'_>,
    receiver_snapshots: usize,
    written: u64,
    referenced: u64,
) -> bool {
    match st.common {
        Some(_) => !st.receiver_newer.is_empty() || written > 0,
        None => !receiver_is_empty(receiver_snapshots, referenced, DEFAULT_EMPTY_MAX_REFERENCED),
    }
}

/// A receiver dataset with no snapshot and at most `max` bytes: a freshly
/// created pool's root, which `--overwrite-empty-target` may replace.
pub fn receiver_is_empty(snapshots: usize, referenced: u64, max: u64) -> bool {
    snapshots == 0 && referenced <= max
}

pub fn standing<'a>(src: &'a Dataset, dst: &Dataset) -> Standing<'a> {
    let dst_by_guid: HashMap<u64, &Snapshot> = dst.snapshots.iter().map(|s| (s.guid, s)).collect();
    let Some(common) = src
        .snapshots
        .iter()
        .rev()
        .find(|s| dst_by_guid.contains_key(&s.guid))
    else {
        return Standing {
            common: None,
            source_newer: src.snapshots.iter().map(SnapRef::from).collect(),
            receiver_newer: Vec::new(),
        };
    };
    // createtxg orders snapshots within one pool only: compare each side's
    // snapshots with the common one's txg on that side.
    let common_txg_on_dst = dst_by_guid[&common.guid].createtxg;
    Standing {
        common: Some(common),
        source_newer: src
            .snapshots
            .iter()
            .filter(|s| s.createtxg > common.createtxg)
            .map(SnapRef::from)
            .collect(),
        receiver_newer: dst
            .snapshots
            .iter()
            .filter(|s| s.createtxg > common_txg_on_dst)
            .map(SnapRef::from)
            .collect(),
    }
}

fn decide(src: &Dataset, dst: Option<&Dataset>, opts: &Options, noise: Option<&String>) -> Action {
    let (Some(first), Some(last)) = (src.snapshots.first(), src.snapshots.last()) else {
        return Action::NoSnapshots;
    };
    let raw = src.encrypted;
    let Some(dst) = dst else {
        return Action::Full {
            first: first.into(),
            last: last.into(),
            raw,
            force: false,
        };
    };
    if dst.kind != src.kind {
        return Action::Conflict(Conflict::KindMismatch {
            source: src.kind,
            receiver: dst.kind,
        });
    }
    if let Some(token) = &dst.resume_token {
        return Action::Resume {
            token: token.clone(),
        };
    }
    if raw && !dst.encrypted {
        return Action::Conflict(Conflict::RawMismatch);
    }
    let Standing {
        common,
        source_newer,
        receiver_newer,
    } = standing(src, dst);
    let Some(common) = common else {
        if receiver_is_empty(
            dst.snapshots.len(),
            dst.referenced,
            opts.empty_max_referenced,
        ) {
            if opts.overwrite_empty {
                return Action::Full {
                    first: first.into(),
                    last: last.into(),
                    raw,
                    force: true,
                };
            }
            return Action::Conflict(Conflict::ReceiverExistsEmpty {
                receiver_referenced: dst.referenced,
            });
        }
        return Action::Conflict(Conflict::NoCommonSnapshot {
            receiver_snapshots: dst.snapshots.iter().map(SnapRef::from).collect(),
            receiver_referenced: dst.referenced,
        });
    };
    if !receiver_newer.is_empty() {
        return Action::Conflict(Conflict::Diverged {
            common: common.into(),
            source_newer,
            receiver_newer,
        });
    }
    let discard = match noise {
        Some(evidence) if dst.written > 0 => Some(Discard {
            written: dst.written,
            evidence: evidence.clone(),
        }),
        _ => None,
    };
    if dst.written > 0 && discard.is_none() {
        // A snapshot this node holds for the receiver (the last run's common
        // base), newer than what the receiver still has: deleted there.
        let lost_base = src
            .snapshots
            .iter()
            .rfind(|s| s.createtxg > common.createtxg && s.userrefs > 0)
            .map(SnapRef::from);
        return Action::Conflict(Conflict::ReceiverModified {
            common: common.into(),
            written: dst.written,
            lost_base,
        });
    }
    if source_newer.is_empty() {
        // Noise alone, and nothing to send: nothing to roll back for.
        return Action::UpToDate {
            snapshot: common.into(),
        };
    }
    Action::Incremental {
        base: common.into(),
        last: last.into(),
        count: source_newer.len(),
        raw,
        discard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compact notation: `"name:guid name:guid"`, oldest first.
    fn ds(name: &str, snaps: &str) -> Dataset {
        let snapshots = snaps
            .split_whitespace()
            .enumerate()
            .map(|(i, s)| {
                let (n, g) = s.split_once(':').unwrap();
                Snapshot {
                    name: n.into(),
                    guid: g.parse().unwrap(),
                    createtxg: 10 * (i as u64 + 1),
                    creation: 1_700_000_000 + i as i64,
                    used: 0,
                    referenced: 4096,
                    written: 100 * (i as u64 + 1),
                    userrefs: 0,
                }
            })
            .collect();
        Dataset {
            name: name.into(),
            kind: Kind::Filesystem,
            guid: 1,
            used: 1 << 20,
            referenced: 1 << 20,
            written: 0,
            resume_token: None,
            encrypted: false,
            snapshots,
        }
    }

    fn listing(v: Vec<Dataset>) -> Listing {
        Listing {
            datasets: v.into_iter().map(|d| (d.name.clone(), d)).collect(),
            partial: false,
        }
    }

    fn one(src: Dataset, dst: Option<Dataset>) -> Action {
        one_opts(
            src,
            dst,
            &Options {
                empty_max_referenced: DEFAULT_EMPTY_MAX_REFERENCED,
                ..Default::default()
            },
        )
    }

    fn one_opts(src: Dataset, dst: Option<Dataset>, o: &Options) -> Action {
        let p = plan(
            &listing(vec![src]),
            "p",
            &listing(dst.into_iter().collect()),
            "p",
            o,
        );
        assert_eq!(p.items.len(), 1);
        p.items[0].action.clone()
    }

    fn snap_names(v: &[SnapRef]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn up_to_date() {
        let a = one(ds("p", "a:1 b:2"), Some(ds("p", "a:1 b:2")));
        assert!(
            matches!(a, Action::UpToDate { ref snapshot } if snapshot.name == "b"),
            "{a:?}"
        );
    }

    #[test]
    fn incremental_from_newest_common_with_intermediates() {
        let a = one(ds("p", "a:1 b:2 c:3 d:4"), Some(ds("p", "a:1 b:2")));
        let Action::Incremental {
            base,
            last,
            count,
            raw,
            discard,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(
            (base.name.as_str(), last.name.as_str(), count, raw, discard),
            ("b", "d", 2, false, None)
        );
    }

    #[test]
    fn matching_is_by_guid_not_name() {
        // Same names, different guids: not the same snapshots.
        let a = one(ds("p", "a:1 b:2"), Some(ds("p", "a:7 b:8")));
        assert!(
            matches!(a, Action::Conflict(Conflict::NoCommonSnapshot { .. })),
            "{a:?}"
        );
        // Renamed on the receiver but same guid: still common.
        let a = one(ds("p", "a:1 b:2"), Some(ds("p", "renamed:1")));
        assert!(
            matches!(a, Action::Incremental { ref base, .. } if base.name == "a"),
            "{a:?}"
        );
    }

    #[test]
    fn snapshots_pruned_on_source_are_fine() {
        let a = one(ds("p", "c:3 d:4"), Some(ds("p", "a:1 b:2 c:3")));
        assert!(
            matches!(a, Action::Incremental { ref base, count: 1, .. } if base.name == "c"),
            "{a:?}"
        );
    }

    #[test]
    fn full_when_absent_oldest_then_newest() {
        let a = one(ds("p", "a:1 b:2 c:3"), None);
        let Action::Full {
            first, last, force, ..
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(
            (first.name.as_str(), last.name.as_str(), force),
            ("a", "c", false)
        );
    }

    #[test]
    fn raw_when_encrypted() {
        let mut s = ds("p", "a:1 b:2");
        s.encrypted = true;
        assert!(matches!(
            one(s.clone(), None),
            Action::Full { raw: true, .. }
        ));
        let mut d = ds("p", "a:1");
        d.encrypted = true;
        assert!(matches!(
            one(s.clone(), Some(d)),
            Action::Incremental { raw: true, .. }
        ));
        // Never mix raw into a non-raw copy.
        assert_eq!(
            one(s, Some(ds("p", "a:1"))),
            Action::Conflict(Conflict::RawMismatch)
        );
    }

    #[test]
    fn resume_token_wins() {
        let mut d = ds("p", "a:1");
        d.resume_token = Some("1-abc-def".into());
        assert_eq!(
            one(ds("p", "a:1 b:2"), Some(d)),
            Action::Resume {
                token: "1-abc-def".into()
            }
        );
    }

    #[test]
    fn diverged_shows_both_sides() {
        let a = one(ds("p", "a:1 b:2 c:3"), Some(ds("p", "a:1 x:9 y:10")));
        let Action::Conflict(Conflict::Diverged {
            common,
            source_newer,
            receiver_newer,
        }) = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(common.name, "a");
        assert_eq!(snap_names(&source_newer), ["b", "c"]);
        assert_eq!(snap_names(&receiver_newer), ["x", "y"]);
    }

    #[test]
    fn diverged_even_when_source_has_nothing_new() {
        let a = one(ds("p", "a:1"), Some(ds("p", "a:1 x:9")));
        assert!(
            matches!(a, Action::Conflict(Conflict::Diverged { ref source_newer, .. }) if source_newer.is_empty())
        );
    }

    #[test]
    fn receiver_writes_are_a_conflict() {
        let mut d = ds("p", "a:1");
        d.written = 8192;
        let a = one(ds("p", "a:1 b:2"), Some(d));
        assert!(
            matches!(
                a,
                Action::Conflict(Conflict::ReceiverModified { written: 8192, .. })
            ),
            "{a:?}"
        );
    }

    #[test]
    fn receiver_noise_proven_by_the_receiver_is_rolled_back_then_received() {
        let mut d = ds("p", "a:1");
        d.written = 57344;
        let mut opts = Options::default();
        opts.noise
            .insert("p".into(), "`zfs diff` lists no change".into());
        let a = one_opts(ds("p", "a:1 b:2"), Some(d.clone()), &opts);
        let Action::Incremental {
            base,
            discard: Some(x),
            ..
        } = &a
        else {
            panic!("{a:?}")
        };
        assert_eq!((base.name.as_str(), x.written), ("a", 57344));
        assert!(
            a.is_destructive(),
            "the rollback is a destructive step, shown"
        );
        // Noise and nothing to send: nothing is rolled back.
        let a = one_opts(ds("p", "a:1"), Some(d), &opts);
        assert!(matches!(a, Action::UpToDate { .. }), "{a:?}");
    }

    #[test]
    fn a_deleted_common_snapshot_is_named_not_called_a_write() {
        // The source holds @b for the receiver (the last run's base); the
        // receiver lost it: its "writes" since @a are @b's data.
        let mut src = ds("p", "a:1 b:2 c:3");
        src.snapshots[1].userrefs = 1;
        let mut dst = ds("p", "a:1");
        dst.written = 4096;
        let a = one(src, Some(dst));
        let Action::Conflict(
            c @ Conflict::ReceiverModified {
                lost_base: Some(l), ..
            },
        ) = &a
        else {
            panic!("{a:?}")
        };
        assert_eq!(l.name, "b");
        assert!(c.to_string().contains("no longer has @b"), "{c}");
        assert!(!c.to_string().contains("written since"), "{c}");
    }

    #[test]
    fn no_common_snapshot_with_data_is_never_overwritten() {
        let a = one_opts(
            ds("p", "a:1"),
            Some(ds("p", "z:9")),
            &Options {
                overwrite_empty: true,
                empty_max_referenced: u64::MAX,
                ..Default::default()
            },
        );
        assert!(
            matches!(a, Action::Conflict(Conflict::NoCommonSnapshot { .. })),
            "{a:?}"
        );
        let mut big = ds("p", "");
        big.referenced = 50 << 20;
        let a = one_opts(
            ds("p", "a:1"),
            Some(big),
            &Options {
                overwrite_empty: true,
                empty_max_referenced: 1 << 20,
                ..Default::default()
            },
        );
        assert!(
            matches!(a, Action::Conflict(Conflict::NoCommonSnapshot { receiver_referenced, .. }) if receiver_referenced == 50 << 20)
        );
    }

    #[test]
    fn empty_receiver_needs_explicit_overwrite() {
        let mut empty = ds("p", "");
        empty.referenced = 98304;
        let a = one(ds("p", "a:1 b:2"), Some(empty.clone()));
        assert_eq!(
            a,
            Action::Conflict(Conflict::ReceiverExistsEmpty {
                receiver_referenced: 98304
            })
        );
        let o = Options {
            overwrite_empty: true,
            empty_max_referenced: DEFAULT_EMPTY_MAX_REFERENCED,
            ..Default::default()
        };
        let a = one_opts(ds("p", "a:1 b:2"), Some(empty), &o);
        assert!(matches!(a, Action::Full { force: true, .. }));
        assert!(a.is_destructive());
    }

    #[test]
    fn kind_mismatch() {
        let mut v = ds("p", "a:1");
        v.kind = Kind::Volume;
        assert!(matches!(
            one(ds("p", "a:1"), Some(v)),
            Action::Conflict(Conflict::KindMismatch { .. })
        ));
    }

    #[test]
    fn no_snapshots_on_source() {
        assert_eq!(one(ds("p", ""), None), Action::NoSnapshots);
    }

    #[test]
    fn conflict_blocks_only_its_subtree_and_new_children_are_full() {
        let src = listing(vec![
            ds("p", "a:1 b:2"),
            ds("p/bad", "a:3 b:4"),
            ds("p/bad/child", "a:5"),
            ds("p/bad/child/grand", "a:6"),
            ds("p/bad2", "a:7"),
            ds("p/good", "a:8 b:9"),
            ds("p/new", "n:10"),
        ]);
        let dst = listing(vec![
            ds("p", "a:1"),
            ds("p/bad", "a:3 x:99"),
            ds("p/bad/child", "a:5"),
            ds("p/bad2", "a:7"),
            ds("p/good", "a:8"),
            ds("p/gone", "a:11"),
        ]);
        let p = plan(&src, "p", &dst, "p", &Options::default());
        let by: HashMap<&str, &Action> = p
            .items
            .iter()
            .map(|i| (i.rel.as_str(), &i.action))
            .collect();
        assert!(matches!(by[""], Action::Incremental { .. }));
        assert!(matches!(
            by["bad"],
            Action::Conflict(Conflict::Diverged { .. })
        ));
        assert!(matches!(by["bad/child"], Action::Blocked { by, .. } if by == "p/bad"));
        assert!(matches!(by["bad/child/grand"], Action::Blocked { by, .. } if by == "p/bad"));
        assert!(
            matches!(by["bad2"], Action::UpToDate { .. }),
            "`bad2` shares a prefix with `bad` but is not below it"
        );
        assert!(matches!(by["good"], Action::Incremental { .. }));
        assert!(matches!(by["new"], Action::Full { .. }));
        assert_eq!(p.receiver_only, ["p/gone"]);
        assert_eq!(p.conflicts().count(), 1);
        let order: Vec<&str> = p.items.iter().map(|i| i.rel.as_str()).collect();
        for (i, r) in order.iter().enumerate() {
            if let Some(par) = parent(r) {
                assert!(order[..i].contains(&par), "{par} must come before {r}");
            }
        }
    }

    #[test]
    fn parent_without_snapshots_blocks_absent_children_only() {
        let src = listing(vec![
            ds("p", ""),
            ds("p/a", "s:1"),
            ds("p/b", ""),
            ds("p/b/c", "s:2"),
        ]);
        let dst = listing(vec![ds("p", "")]);
        let p = plan(&src, "p", &dst, "p", &Options::default());
        let by: HashMap<&str, &Action> = p
            .items
            .iter()
            .map(|i| (i.rel.as_str(), &i.action))
            .collect();
        assert_eq!(by[""], &Action::NoSnapshots);
        assert!(
            matches!(by["a"], Action::Full { .. }),
            "root exists on the receiver"
        );
        assert_eq!(by["b"], &Action::NoSnapshots);
        assert!(
            matches!(by["b/c"], Action::Blocked { .. }),
            "p/b does not exist on the receiver"
        );
    }

    #[test]
    fn resume_defers_absent_children() {
        let src = listing(vec![
            ds("p", "a:1"),
            ds("p/x", "a:2 b:3"),
            ds("p/x/y", "a:4"),
        ]);
        let mut dx = ds("p/x", "");
        dx.resume_token = Some("tok".into());
        let dst = listing(vec![ds("p", "a:1"), dx]);
        let p = plan(&src, "p", &dst, "p", &Options::default());
        assert!(matches!(p.items[1].action, Action::Resume { .. }));
        assert!(matches!(p.items[2].action, Action::Blocked { .. }));
    }

    #[test]
    fn different_target_root_and_exclusions() {
        let src = listing(vec![
            ds("tank", "a:1"),
            ds("tank/scratch", "a:2"),
            ds("tank/scratch/x", "a:3"),
            ds("tank/keep", "a:4"),
        ]);
        let dst = listing(vec![
            ds("backup/tank", "a:1"),
            ds("backup/tank/scratch", "zz:9"),
        ]);
        let o = Options {
            exclude: vec!["tank/scratch".into()],
            ..Default::default()
        };
        let p = plan(&src, "tank", &dst, "backup/tank", &o);
        let by: HashMap<&str, &Item> = p.items.iter().map(|i| (i.rel.as_str(), i)).collect();
        assert_eq!(by["scratch"].action, Action::Excluded);
        assert_eq!(by["scratch/x"].action, Action::Excluded);
        assert!(matches!(by["keep"].action, Action::Full { .. }));
        assert_eq!(by["keep"].target, "backup/tank/keep");
        assert!(
            p.receiver_only.is_empty(),
            "excluded datasets are not reported as receiver-only"
        );
    }
}
