//! Test helpers shared by the unit tests: listings in a compact notation.

use crate::zfs::{Dataset, Kind, Listing, Snapshot};

/// A filesystem with `snaps` written `"name:guid:createtxg ..."` (oldest
/// first; an optional fourth field is the creation time in seconds) and
/// `written` bytes of unsnapshotted writes. Every snapshot has 4 KiB written;
/// the dataset references 4 MiB.
pub fn ds(name: &str, snaps: &str, written: u64) -> Dataset {
    Dataset {
        name: name.into(),
        kind: Kind::Filesystem,
        guid: 1,
        used: 1 << 20,
        referenced: 4 << 20,
        written,
        resume_token: None,
        encrypted: false,
        snapshots: snaps
            .split_whitespace()
            .map(|s| {
                let f: Vec<&str> = s.split(':').collect();
                Snapshot {
                    name: f[0].into(),
                    guid: f[1].parse().unwrap(),
                    createtxg: f[2].parse().unwrap(),
                    creation: f.get(3).map_or(1_763_800_000, |c| c.parse().unwrap()),
                    used: 0,
                    referenced: 4 << 20,
                    written: 4096,
                    userrefs: 0,
                }
            })
            .collect(),
    }
}

/// The same as a volume.
pub fn vol(name: &str, snaps: &str, written: u64) -> Dataset {
    Dataset {
        kind: Kind::Volume,
        ..ds(name, snaps, written)
    }
}

pub fn listing(v: Vec<Dataset>) -> Listing {
    Listing {
        datasets: v.into_iter().map(|d| (d.name.clone(), d)).collect(),
        partial: false,
    }
}
