//! The size history: after every successful pool run, what each dataset
//! weighed on both sides and which snapshot was the newest replicated one.
//! One JSON file per pool under `<state_dir>/history/`, replaced atomically,
//! bounded in length. A file that does not parse is never trusted or
//! dropped: it is moved aside and the pool is refused until the history is
//! rebuilt (`zfs-nfs-replica history rebuild POOL`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::zfs::Listing;

/// Entries kept per pool (one per successful run: 10 days at one run per
/// ten minutes would be 1440; the guards only need the latest, the rest is
/// for people).
pub const MAX_ENTRIES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub version: u32,
    pub pool: String,
    /// Oldest first.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// RFC 3339.
    pub time: String,
    pub peer: String,
    /// The guid of the pool's root dataset (changes when the pool is recreated).
    pub root_guid: u64,
    pub datasets: BTreeMap<String, Sizes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sizes {
    pub used: u64,
    pub referenced: u64,
    /// On the replica (the peer's copy), when it exists.
    pub replica_used: Option<u64>,
    pub replica_referenced: Option<u64>,
    /// The newest snapshot both sides have.
    pub snapshot: Option<SnapshotRef>,
    /// `referenced` of the source's newest snapshot: what the replica holds
    /// (or is about to). The guards compare this, not the live data, when
    /// both runs have it: a big file written and deleted again between two
    /// snapshots was never replicated, and its deletion is no shrinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_referenced: Option<u64>,
    /// The operator accepted these live sizes (`--accept-size-change`)
    /// while the replica still held more, and no transfer has brought the
    /// replica down to them yet. The min-ratio guard compares against them
    /// instead of the replica until then (`guard::mark_acceptance`), so an
    /// acceptance lasts until it is replicated, a planned migration's
    /// handover included.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRef {
    pub guid: u64,
    pub name: String,
    /// Creation, seconds since the epoch.
    pub time: i64,
}

impl History {
    pub fn new(pool: &str) -> History {
        History {
            version: 1,
            pool: pool.to_string(),
            entries: Vec::new(),
        }
    }

    /// The latest entry for this peer.
    pub fn last_for(&self, peer: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.peer == peer)
    }

    /// The latest entry for this peer recorded since `since` (RFC 3339:
    /// when this node last became master). An entry from before belongs to
    /// an earlier stretch in this direction: the other node was master in
    /// between and both sides changed under other rules, so it says nothing
    /// about now. None `since` (not known): every entry counts.
    pub fn last_for_since(&self, peer: &str, since: Option<&str>) -> Option<&Entry> {
        let since = since.and_then(crate::units::parse_time);
        self.entries.iter().rev().find(|e| {
            e.peer == peer
                && match (since, crate::units::parse_time(&e.time)) {
                    (Some(s), Some(t)) => t >= s,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        })
    }

    pub fn push(&mut self, e: Entry) {
        self.entries.push(e);
        let extra = self.entries.len().saturating_sub(MAX_ENTRIES);
        self.entries.drain(..extra);
    }
}

impl Entry {
    /// The entry of a run whose size change the operator accepted
    /// (`--accept-size-change`): accepted as the data stands now. Where the
    /// live data is smaller than the newest snapshot, the baseline is the
    /// live size, so the shrink that was accepted is not refused again
    /// once the next snapshot holds it (found by the life test: deletes
    /// not yet snapshotted were accepted, then refused a second time).
    pub fn accepting_live(mut self) -> Entry {
        for s in self.datasets.values_mut() {
            s.newest_referenced = s.newest_referenced.map(|n| n.min(s.referenced));
        }
        self
    }
}

/// Build an entry from both sides' listings (`source` root `root`, mapped to
/// the receiver under `target`).
pub fn entry_from(
    time: String,
    peer: &str,
    root: &str,
    target: &str,
    source: &Listing,
    receiver: &Listing,
) -> Option<Entry> {
    let root_ds = source.datasets.get(root)?;
    let mut datasets = BTreeMap::new();
    for (name, d) in &source.datasets {
        let rname = crate::zfs::names::rebase(name, root, target);
        let r = receiver.datasets.get(&rname);
        let snapshot = r.and_then(|r| {
            d.snapshots
                .iter()
                .rev()
                .find(|s| r.snapshots.iter().any(|x| x.guid == s.guid))
                .map(|s| SnapshotRef {
                    guid: s.guid,
                    name: s.name.to_string(),
                    time: s.creation,
                })
        });
        datasets.insert(
            name.clone(),
            Sizes {
                used: d.used,
                referenced: d.referenced,
                replica_used: r.map(|r| r.used),
                replica_referenced: r.map(|r| r.referenced),
                snapshot,
                newest_referenced: d.snapshots.last().map(|s| s.referenced),
                accepted: false,
            },
        );
    }
    Some(Entry {
        time,
        peer: peer.to_string(),
        root_guid: root_ds.guid,
        datasets,
    })
}

/// The state of a pool's history file.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet (first run).
    None,
    Ok(History),
    /// The file did not parse; it was moved to `moved_to`.
    Corrupt {
        reason: String,
        moved_to: PathBuf,
    },
    /// An earlier corrupt file was moved aside and no history was rebuilt since.
    NeedsRebuild {
        aside: PathBuf,
    },
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("history")
}

/// `zpool1/nfs` -> `zpool1%2Fnfs.json`.
pub fn path(state_dir: &Path, pool: &str) -> PathBuf {
    dir(state_dir).join(format!(
        "{}.json",
        pool.replace('%', "%25").replace('/', "%2F")
    ))
}

/// Read a pool's history. A corrupt file is moved aside (never deleted),
/// unless `move_aside` is false (dry-run changes no file).
pub fn load(state_dir: &Path, pool: &str, move_aside: bool) -> Result<Loaded, String> {
    let p = path(state_dir, pool);
    let text = match crate::files::read(&p, crate::files::DEFAULT_LIMIT) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            return Ok(match corrupt_copies(state_dir, pool).into_iter().last() {
                Some(aside) => Loaded::NeedsRebuild { aside },
                None => Loaded::None,
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    let parsed = serde_json::from_slice::<History>(&text)
        .map_err(|e| e.to_string())
        .and_then(|h| {
            if h.version != 1 {
                Err(format!("unknown version {}", h.version))
            } else if h.pool != pool {
                Err(format!("it is the history of pool `{}`", h.pool))
            } else {
                Ok(h)
            }
        });
    match parsed {
        Ok(h) => Ok(Loaded::Ok(h)),
        Err(reason) if !move_aside => Ok(Loaded::Corrupt {
            reason: format!("{}: {reason}", p.display()),
            moved_to: p,
        }),
        Err(reason) => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let moved_to = p.with_extension(format!("json.corrupt-{stamp}"));
            std::fs::rename(&p, &moved_to).map_err(|e| {
                format!(
                    "{}: corrupt ({reason}) and cannot be moved aside: {e}",
                    p.display()
                )
            })?;
            Ok(Loaded::Corrupt {
                reason: format!("{}: {reason}", p.display()),
                moved_to,
            })
        }
    }
}

fn corrupt_copies(state_dir: &Path, pool: &str) -> Vec<PathBuf> {
    let base = path(state_dir, pool);
    let prefix = format!(
        "{}.corrupt-",
        base.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    v.sort();
    v
}

pub fn save(state_dir: &Path, h: &History) -> Result<(), crate::files::JsonFileError> {
    crate::files::save_json(&path(state_dir, &h.pool), h)?;
    // A rebuilt history supersedes the copies moved aside: keep them for
    // people, but rename them so they no longer block the pool.
    for c in corrupt_copies(state_dir, &h.pool) {
        let name = c
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace(".corrupt-", ".replaced-");
        let _ = std::fs::rename(&c, c.with_file_name(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(peer: &str, used: u64) -> Entry {
        Entry {
            time: "2026-11-21T10:00:00Z".into(),
            peer: peer.into(),
            root_guid: 7,
            datasets: [(
                "zpool1".to_string(),
                Sizes {
                    used,
                    referenced: used / 2,
                    replica_used: Some(used),
                    replica_referenced: Some(used / 2),
                    snapshot: Some(SnapshotRef {
                        guid: 1,
                        name: "s1".into(),
                        time: 1,
                    }),
                    newest_referenced: None,
                    accepted: false,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn round_trip_bounded_and_per_peer() {
        let d = tempfile::tempdir().unwrap();
        let mut h = History::new("zpool1/nfs");
        for i in 0..(MAX_ENTRIES as u64 + 5) {
            h.push(entry(if i % 2 == 0 { "pve2" } else { "pve3" }, i));
        }
        assert_eq!(h.entries.len(), MAX_ENTRIES);
        save(d.path(), &h).unwrap();
        assert!(path(d.path(), "zpool1/nfs").ends_with("history/zpool1%2Fnfs.json"));
        match load(d.path(), "zpool1/nfs", true).unwrap() {
            Loaded::Ok(back) => {
                assert_eq!(back, h);
                assert_eq!(
                    back.last_for("pve3").unwrap().datasets["zpool1"].used,
                    MAX_ENTRIES as u64 + 3
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load(d.path(), "zpool2", true).unwrap(),
            Loaded::None
        ));
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_blocks_until_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let mut h = History::new("zpool1");
        h.push(entry("pve2", 100));
        save(d.path(), &h).unwrap();
        let p = path(d.path(), "zpool1");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() / 2]).unwrap();
        let moved = match load(d.path(), "zpool1", true).unwrap() {
            Loaded::Corrupt { reason, moved_to } => {
                assert!(reason.contains("zpool1.json"), "{reason}");
                moved_to
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            std::fs::read_to_string(&moved).unwrap(),
            &text[..text.len() / 2]
        );
        // Still blocked on the next run: the file is gone, a copy is aside.
        assert!(matches!(
            load(d.path(), "zpool1", true).unwrap(),
            Loaded::NeedsRebuild { .. }
        ));
        // Rebuilt: a new history unblocks, the corrupt copy is kept, renamed.
        save(d.path(), &h).unwrap();
        assert!(matches!(
            load(d.path(), "zpool1", true).unwrap(),
            Loaded::Ok(_)
        ));
        assert!(!moved.exists());
        let kept: Vec<_> = std::fs::read_dir(dir(d.path()))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(kept.iter().any(|n| n.contains(".replaced-")), "{kept:?}");
        // Another pool's history under this name is corrupt too.
        let mut other = History::new("zpool9");
        other.push(entry("pve2", 1));
        std::fs::write(&p, serde_json::to_string(&other).unwrap()).unwrap();
        assert!(matches!(
            load(d.path(), "zpool1", true).unwrap(),
            Loaded::Corrupt { .. }
        ));
    }
}
