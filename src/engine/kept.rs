//! Kept snapshot lists: between two full listings, a dataset whose
//! snapshots did not change since the last run is not listed again. Each
//! side is asked for its datasets alone with `snapshots_changed` (OpenZFS
//! 2.2+; [`Op::ListChanges`], cheap: no snapshot is read); only the datasets
//! whose value moved, or that are not yet known well enough, have their
//! snapshots listed ([`Op::ListSnapshotsOf`]); the others' come from this
//! node's record of the last listing (`<state_dir>/kept/<node>.json`).
//!
//! When a kept list is trusted ([`Entry::trusted`]), and why that is exact:
//! `snapshots_changed` is the time, in whole seconds of the dataset's node,
//! at which a snapshot of it was last made, destroyed or renamed. A list
//! taken in the same second as a change could miss a second change in that
//! same second, which leaves the value as it was (openzfs/zfs#17998). So a
//! value is first *seen* (the local boot clock right after the listing
//! that showed it), and a list is kept only when it was taken at least
//! [`MARGIN`] after its value was seen: any change after the list then
//! bears a later second, unless that node's clock was stepped back by more
//! than the margin in between. The other ways a dataset's snapshots change
//! are caught by its row: another dataset under the name (`guid`,
//! `createtxg`), a promote, which moves snapshots to the clone without
//! touching its value (`origin`), a value never set (`-`: always listed).
//! The times are the local `CLOCK_BOOTTIME` (no wall-clock step moves it)
//! and hold only within one boot of this node.
//!
//! The completion that follows ([`super::fast_listing`]) checks the guid
//! and createtxg of every snapshot a plan stands on against the node, and a
//! full listing still comes at least every `full_listing_every`. Anything
//! unexpected here makes the run use the plain fast listing instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::debug;

use super::checked;
use super::listing::chunked;
use crate::runner::Runner;
use crate::side::Side;
use crate::ssh::Peer;
use crate::zfs::changes::{Stamp, parse_changes};
use crate::zfs::{ListParser, Listing, Op};

/// How long after its `snapshots_changed` value was first seen a list must
/// have been taken to be kept.
pub const MARGIN: Duration = Duration::from_secs(60);

/// More snapshots than this on a side and nothing is kept for it: the
/// record would cost more to read than the listing it saves.
pub const MAX_KEPT: usize = 200_000;

/// What this node knows of one side's datasets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// `/proc/sys/kernel/random/boot_id` when the times were taken.
    pub boot_id: String,
    pub datasets: BTreeMap<String, Entry>,
    /// When this side last answered that it has no `snapshots_changed`
    /// (OpenZFS before 2.2; boot clock, ns): not asked again for a day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<u64>,
}

/// How long a side without `snapshots_changed` is not asked again.
const REPROBE: Duration = Duration::from_secs(24 * 3600);

impl Kept {
    /// It said less than [`REPROBE`] ago that it has no `snapshots_changed`.
    pub fn unsupported_now(&self, now: u64) -> bool {
        self.unsupported
            .is_some_and(|t| now.saturating_sub(t) < REPROBE.as_nanos() as u64)
    }
}

/// One dataset's snapshots as listed, and what vouches for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub stamp: Stamp,
    /// When `stamp` was first seen (boot clock, ns, right after the
    /// listing that showed it).
    pub seen: u64,
    /// When the listing that took `snapshots` started (boot clock, ns).
    pub listed: u64,
    /// `(name after @, guid, createtxg)`, oldest first.
    pub snapshots: Vec<(String, u64, u64)>,
}

impl Entry {
    /// Its snapshots are the dataset's own now: the row is the same and has
    /// a value, and the list was taken at least [`MARGIN`] after that value
    /// was seen.
    pub fn trusted(&self, now: &Stamp) -> bool {
        now.changed.is_some()
            && *now == self.stamp
            && self.listed.saturating_sub(self.seen) >= MARGIN.as_nanos() as u64
    }
}

/// The boot clock in ns.
pub fn boot_clock() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// This boot's id; empty when unreadable (then nothing is ever kept).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Where the record of `node`'s datasets lives.
fn path(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{node}.json"))
}

/// The record of `node`, or an empty one for this boot (none, unreadable,
/// or from another boot).
pub fn load(dir: &Path, node: &str, boot: &str) -> Kept {
    let fresh = || Kept {
        boot_id: boot.to_string(),
        ..Kept::default()
    };
    if boot.is_empty() {
        return fresh();
    }
    match crate::files::load_json::<Kept>(&path(dir, node)) {
        Ok(Some(k)) if k.boot_id == boot => k,
        Ok(_) => fresh(),
        Err(e) => {
            debug!("kept snapshot lists of {node}: {e}; starting anew");
            fresh()
        }
    }
}

/// Write the record of `node` (compact JSON, replaced atomically); too big
/// a record is removed instead.
pub fn save(dir: &Path, node: &str, k: &Kept) -> Result<(), String> {
    let p = path(dir, node);
    let snapshots: usize = k.datasets.values().map(|e| e.snapshots.len()).sum();
    if snapshots > MAX_KEPT || k.boot_id.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", p.display()))
            }
            _ => Ok(()),
        };
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = serde_json::to_vec(k).map_err(|e| e.to_string())?;
    crate::files::replace_atomically(&p, &text, 0o644, None)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Which datasets need their snapshots listed: every one whose entry is
/// not [`Entry::trusted`] by its row now.
pub fn to_list(kept: &Kept, rows: &[(String, Stamp)]) -> Vec<String> {
    rows.iter()
        .filter(|(name, stamp)| !kept.datasets.get(name).is_some_and(|e| e.trusted(stamp)))
        .map(|(name, _)| name.clone())
        .collect()
}

/// One side's trees, as [`Op::ListFast`] would list them: the datasets'
/// rows, each dataset's snapshots kept or listed now; and the record to
/// keep for next time (entries of datasets below `roots` replaced, others
/// left as they were).
pub async fn list_side<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    roots: &[String],
    kept: &Kept,
) -> Result<(Listing, Kept), Failed> {
    let op = Op::ListChanges {
        roots: roots.to_vec(),
    };
    let started = boot_clock();
    if kept.unsupported_now(started) {
        return Err(Failed::Unsupported);
    }
    debug!(command = %side.show(&op), "run");
    let out = runner.output(&side.cmd(&op), timeout).await;
    let text = checked(side, &op, out).map_err(|e| match &e {
        super::PoolError::Zfs { stderr, .. } if stderr.contains("snapshots_changed") => {
            Failed::NewlyUnsupported(Kept {
                boot_id: kept.boot_id.clone(),
                unsupported: Some(started),
                ..Kept::default()
            })
        }
        _ => Failed::Other(e.to_string()),
    })?;
    let answered = boot_clock();
    let rows = parse_changes(&text).map_err(|e| Failed::Other(format!("{}: {e}", side.label())))?;
    let wanted = to_list(kept, &rows);
    let listed = chunked(runner, timeout, side, &wanted, |datasets| {
        Op::ListSnapshotsOf { datasets }
    })
    .await
    .map_err(|e| Failed::Other(e.to_string()))?;
    debug!(
        side = %side.label(),
        "snapshots listed for {} of {} datasets, kept for the others",
        wanted.len(),
        rows.len()
    );
    assemble(kept, &rows, &wanted, &listed, started, answered)
        .map_err(|e| Failed::Other(format!("{}: {e}", side.label())))
}

/// Where this node keeps its records of snapshot lists, and under which
/// node names.
#[derive(Debug, Clone)]
pub struct KeptPlace {
    pub dir: std::path::PathBuf,
    pub local: String,
    /// Read the records, never write them (dry-run).
    pub read_only: bool,
}

/// Both sides' trees from the datasets alone plus the snapshots of those
/// whose lists are not kept, both sides at once; each side's record
/// written for the next run (never in dry-run). An `Err`: the plain fast
/// listing instead.
pub(super) async fn list_kept<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    sroots: &[String],
    droots: &[String],
    place: &KeptPlace,
) -> Result<(Listing, Listing), String> {
    let boot = boot_id();
    let (skept, dkept) = (
        load(&place.dir, &place.local, &boot),
        load(&place.dir, &peer.name, &boot),
    );
    let now = boot_clock();
    if skept.unsupported_now(now) || dkept.unsupported_now(now) {
        return Err(Failed::Unsupported.to_string());
    }
    let (s, d) = tokio::join!(
        list_side(runner, timeout, Side::Local, sroots, &skept),
        list_side(runner, timeout, Side::Remote(peer), droots, &dkept)
    );
    let (s, d) = (record(place, &place.local, s), record(place, &peer.name, d));
    Ok((s?, d?))
}

/// One side's answer: its record written (unless dry-run), its listing.
fn record(
    place: &KeptPlace,
    node: &str,
    r: Result<(Listing, Kept), Failed>,
) -> Result<Listing, String> {
    let (out, next) = match r {
        Ok((listing, next)) => (Ok(listing), Some(next)),
        Err(Failed::NewlyUnsupported(next)) => (Err(Failed::Unsupported.to_string()), Some(next)),
        Err(e) => (Err(e.to_string()), None),
    };
    if let Some(next) = next
        && !place.read_only
        && let Err(e) = save(&place.dir, node, &next)
    {
        debug!("cannot keep the snapshot lists of {node}: {e}");
    }
    out
}

/// Why a side's kept lists were not used.
#[derive(Debug)]
pub enum Failed {
    /// It has no `snapshots_changed`, as it said less than a day ago.
    Unsupported,
    /// It just said so: the record to keep.
    NewlyUnsupported(Kept),
    Other(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unsupported | Failed::NewlyUnsupported(_) => {
                f.write_str("no snapshots_changed (OpenZFS before 2.2)")
            }
            Failed::Other(why) => f.write_str(why),
        }
    }
}

/// The listing and the new record from the rows, the kept entries and the
/// snapshots listed now (`listed`: `name@snap\tguid\tcreatetxg` lines of
/// exactly the datasets `wanted`).
pub fn assemble(
    kept: &Kept,
    rows: &[(String, Stamp)],
    wanted: &[String],
    listed: &str,
    started: u64,
    answered: u64,
) -> Result<(Listing, Kept), String> {
    let mut fresh: BTreeMap<&str, Vec<(String, u64, u64)>> =
        wanted.iter().map(|w| (w.as_str(), Vec::new())).collect();
    for (i, line) in listed.lines().enumerate() {
        let at = |why: &str| format!("`zfs list -d 1` line {}: {why}: {line:?}", i + 1);
        let f: Vec<&str> = line.split('\t').collect();
        let [name, guid, createtxg] = f[..] else {
            return Err(at("expected 3 tab-separated fields"));
        };
        let Some((ds, short)) = name.split_once('@') else {
            return Err(at("not a snapshot"));
        };
        let Some(list) = fresh.get_mut(ds) else {
            return Err(at("a dataset not asked about"));
        };
        let num = |v: &str| v.parse::<u64>().map_err(|_| at("not a number"));
        list.push((short.to_string(), num(guid)?, num(createtxg)?));
    }
    let mut next = Kept {
        boot_id: kept.boot_id.clone(),
        datasets: kept.datasets.clone(),
        unsupported: None,
    };
    // A dataset no longer listed below one that is: gone, forgotten.
    let listed: BTreeSet<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    next.datasets.retain(|name, _| {
        listed.contains(name.as_str())
            || !name
                .match_indices('/')
                .any(|(i, _)| listed.contains(&name[..i]))
    });
    let mut parser = ListParser::fast();
    for (name, stamp) in rows {
        parser.line(&format!("{name}\t{}\t{}", stamp.guid, stamp.createtxg));
        let snapshots = match fresh.remove(name.as_str()) {
            Some(mut list) => {
                list.sort_by_key(|s| s.2);
                match stamp.changed {
                    Some(_) => {
                        let seen = match kept.datasets.get(name) {
                            Some(e) if e.stamp == *stamp => e.seen,
                            _ => answered,
                        };
                        next.datasets.insert(
                            name.clone(),
                            Entry {
                                stamp: stamp.clone(),
                                seen,
                                listed: started,
                                snapshots: list.clone(),
                            },
                        );
                    }
                    None => {
                        next.datasets.remove(name);
                    }
                }
                list
            }
            None => match kept.datasets.get(name) {
                Some(e) => e.snapshots.clone(),
                None => return Err(format!("{name:?}: neither listed nor kept")),
            },
        };
        for (short, guid, createtxg) in &snapshots {
            parser.line(&format!("{name}@{short}\t{guid}\t{createtxg}"));
        }
    }
    let listing = parser.finish().map_err(|e| e.to_string())?;
    Ok((listing, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    fn stamp(guid: u64, changed: Option<u64>) -> Stamp {
        Stamp {
            guid,
            createtxg: guid,
            origin: None,
            changed,
        }
    }

    fn entry(s: Stamp, seen: u64, listed: u64) -> Entry {
        Entry {
            stamp: s,
            seen,
            listed,
            snapshots: vec![("s1".into(), 101, 5), ("s2".into(), 102, 6)],
        }
    }

    #[test]
    fn a_kept_list_is_trusted_only_when_its_row_is_the_same_and_it_was_taken_well_after() {
        let s = stamp(7, Some(1_764_600_000));
        let promoted = Stamp {
            origin: Some("zpool1/a@s1".into()),
            ..s.clone()
        };
        let replaced = Stamp {
            createtxg: 99,
            ..s.clone()
        };
        // (entry, row now, trusted?)
        let table = [
            (entry(s.clone(), 0, MIN), s.clone(), true),
            (entry(s.clone(), 0, 10 * MIN), s.clone(), true),
            // taken less than the margin after the value was first seen
            (entry(s.clone(), 0, MIN - 1), s.clone(), false),
            (entry(s.clone(), 5 * MIN, 5 * MIN), s.clone(), false),
            // listed before it was seen (the run that first saw it)
            (entry(s.clone(), 5 * MIN, 0), s.clone(), false),
            // the value moved: a snapshot made, destroyed or renamed
            (
                entry(s.clone(), 0, MIN),
                stamp(7, Some(1_764_600_001)),
                false,
            ),
            (
                entry(s.clone(), 0, MIN),
                stamp(7, Some(1_764_599_999)),
                false,
            ),
            // another dataset under the name, or a promote
            (
                entry(s.clone(), 0, MIN),
                stamp(8, Some(1_764_600_000)),
                false,
            ),
            (entry(s.clone(), 0, MIN), replaced, false),
            (entry(s.clone(), 0, MIN), promoted, false),
            // never set: always listed
            (entry(stamp(7, None), 0, MIN), stamp(7, None), false),
        ];
        for (i, (e, now, want)) in table.iter().enumerate() {
            assert_eq!(e.trusted(now), *want, "row {i}");
        }
    }

    #[test]
    fn kept_and_listed_snapshots_make_the_fast_listing_and_the_next_record() {
        let a = stamp(7, Some(1000));
        let b = stamp(8, Some(2000));
        let c = stamp(9, None);
        let mut kept = Kept {
            boot_id: "boot".into(),
            ..Kept::default()
        };
        kept.datasets
            .insert("zpool1".into(), entry(a.clone(), 0, MIN));
        kept.datasets
            .insert("zpool1/b".into(), entry(stamp(8, Some(1500)), 0, MIN));
        kept.datasets
            .insert("zpool1/gone".into(), entry(a.clone(), 0, MIN));
        kept.datasets
            .insert("zpool2/x".into(), entry(a.clone(), 0, MIN));
        let rows = vec![
            ("zpool1".to_string(), a.clone()),
            ("zpool1/b".to_string(), b.clone()),
            ("zpool1/c".to_string(), c.clone()),
        ];
        let wanted = to_list(&kept, &rows);
        assert_eq!(wanted, ["zpool1/b", "zpool1/c"]);
        let listed = "zpool1/b@s9\t209\t30\nzpool1/b@s8\t208\t20\nzpool1/c@t\t301\t31\n";
        let (l, next) = assemble(&kept, &rows, &wanted, listed, 5 * MIN, 5 * MIN + 7).unwrap();
        assert!(l.partial);
        let names = |d: &str| -> Vec<(String, u64)> {
            l.datasets[d]
                .snapshots
                .iter()
                .map(|s| (s.name.to_string(), s.guid))
                .collect()
        };
        assert_eq!(names("zpool1"), [("s1".into(), 101), ("s2".into(), 102)]);
        assert_eq!(names("zpool1/b"), [("s8".into(), 208), ("s9".into(), 209)]);
        assert_eq!(names("zpool1/c"), [("t".into(), 301)]);
        assert_eq!(l.datasets["zpool1/b"].guid, 8);
        // The new value is seen now, the list taken when the listing began;
        // a value never set is not kept; a dataset gone is forgotten; other
        // pools' entries stay.
        let eb = &next.datasets["zpool1/b"];
        assert_eq!((eb.seen, eb.listed), (5 * MIN + 7, 5 * MIN));
        assert!(!eb.trusted(&b));
        assert!(!next.datasets.contains_key("zpool1/c"));
        assert!(!next.datasets.contains_key("zpool1/gone"));
        assert!(next.datasets.contains_key("zpool2/x"));
        assert_eq!(next.datasets["zpool1"], kept.datasets["zpool1"]);
        // Listed again a run later (same value): seen stays, listed moves on,
        // and from then on it is kept.
        let (_, later) = assemble(
            &next,
            &rows,
            &["zpool1/b".to_string(), "zpool1/c".to_string()],
            listed,
            15 * MIN,
            15 * MIN + 7,
        )
        .unwrap();
        let eb = &later.datasets["zpool1/b"];
        assert_eq!((eb.seen, eb.listed), (5 * MIN + 7, 15 * MIN));
        assert!(eb.trusted(&b));
    }

    #[test]
    fn an_unexpected_listing_is_an_error() {
        let kept = Kept::default();
        let rows = vec![("zpool1".to_string(), stamp(7, Some(1)))];
        let wanted = vec!["zpool1".to_string()];
        for bad in [
            "zpool1\t7\t1\n",
            "zpool1@s\t1\n",
            "zpool2@s\t1\t2\n",
            "zpool1@s\tx\t2\n",
            "zpool1@s\t1\t2\textra\n",
        ] {
            assert!(
                assemble(&kept, &rows, &wanted, bad, 0, 0).is_err(),
                "{bad:?}"
            );
        }
        // Not listed and not kept.
        assert!(assemble(&kept, &rows, &[], "", 0, 0).is_err());
    }

    /// OpenZFS 2.3.9, captured in the lab from one tree (a volume, a clone,
    /// a held snapshot, a name with a space and a colon, a dataset whose
    /// only snapshot was destroyed, one that never had any, an interrupted
    /// receive): `zfs list -t filesystem,volume -o name,guid,createtxg,
    /// origin,snapshots_changed`, `zfs list -t snapshot -d 1 -o name,guid,
    /// createtxg` of every dataset, and the fast listing; then the same
    /// after `zfs promote zpool1/clone`.
    #[test]
    fn real_listings_of_openzfs_2_3_assemble_into_its_fast_listing_and_a_promote_is_seen() {
        let fast = |text: &str| {
            let mut p = ListParser::fast();
            text.lines().for_each(|l| p.line(l));
            p.finish().unwrap()
        };
        let rows = parse_changes(include_str!("../../tests/fixtures/zfs-changes-2.3.txt")).unwrap();
        let of = include_str!("../../tests/fixtures/zfs-snapshots-of-2.3.txt");
        let want = fast(include_str!(
            "../../tests/fixtures/zfs-list-2.3-fast-kept.txt"
        ));
        let kept = Kept {
            boot_id: "boot".into(),
            ..Kept::default()
        };
        let wanted = to_list(&kept, &rows);
        assert_eq!(wanted.len(), rows.len());
        let (got, next) = assemble(&kept, &rows, &wanted, of, 0, 1).unwrap();
        assert_eq!(got, want);
        // A value never set (`-`: no snapshot ever, or an interrupted
        // receive's new dataset) is not kept; the others are, with the
        // snapshots as listed.
        let unset: Vec<String> = rows
            .iter()
            .filter(|(_, s)| s.changed.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(unset, ["zpool1/never", "zpool1/partial"]);
        assert_eq!(next.datasets.len(), rows.len() - 2);
        assert_eq!(next.datasets["zpool1/empty"].snapshots, []);
        // Vouched for a run later: nothing is listed but the unset ones,
        // and the listing is the same.
        let mut later = next.clone();
        for e in later.datasets.values_mut() {
            e.listed = e.seen + MARGIN.as_nanos() as u64;
        }
        assert_eq!(to_list(&later, &rows), unset);
        let (again, _) = assemble(&later, &rows, &unset, "", 0, 1).unwrap();
        assert_eq!(again, want);
        // The promote moved @s1 and @s2 into the clone without changing its
        // `snapshots_changed`; its origin changed, so it is listed again
        // (and the old origin, whose value moved).
        let promoted = parse_changes(include_str!(
            "../../tests/fixtures/zfs-changes-2.3-promoted.txt"
        ))
        .unwrap();
        let (before, after) = (
            &rows.iter().find(|(n, _)| n == "zpool1/clone").unwrap().1,
            &promoted
                .iter()
                .find(|(n, _)| n == "zpool1/clone")
                .unwrap()
                .1,
        );
        assert_eq!(before.changed, after.changed);
        assert_ne!(before.origin, after.origin);
        let relist = to_list(&later, &promoted);
        assert_eq!(
            relist,
            ["zpool1/a", "zpool1/clone", "zpool1/never", "zpool1/partial"]
        );
        let listed: String = include_str!("../../tests/fixtures/zfs-list-2.3-fast-promoted.txt")
            .lines()
            .filter(|l| {
                l.split_once('@')
                    .is_some_and(|(d, _)| relist.iter().any(|r| r == d))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let (got, _) = assemble(&later, &promoted, &relist, &listed, 0, 1).unwrap();
        assert_eq!(
            got,
            fast(include_str!(
                "../../tests/fixtures/zfs-list-2.3-fast-promoted.txt"
            ))
        );
    }

    #[test]
    fn the_record_is_for_one_boot_and_too_big_a_one_is_not_written() {
        let d = tempfile::tempdir().unwrap();
        let mut k = Kept {
            boot_id: "b1".into(),
            ..Kept::default()
        };
        k.datasets
            .insert("zpool1".into(), entry(stamp(7, Some(1)), 0, MIN));
        save(d.path(), "pve2", &k).unwrap();
        assert_eq!(load(d.path(), "pve2", "b1"), k);
        assert!(load(d.path(), "pve2", "b2").datasets.is_empty());
        assert!(load(d.path(), "pve3", "b1").datasets.is_empty());
        std::fs::write(path(d.path(), "pve2"), "{garbage").unwrap();
        assert!(load(d.path(), "pve2", "b1").datasets.is_empty());
        k.datasets.get_mut("zpool1").unwrap().snapshots = vec![("s".into(), 1, 1); MAX_KEPT + 1];
        save(d.path(), "pve2", &k).unwrap();
        assert!(!path(d.path(), "pve2").exists());
    }
}
