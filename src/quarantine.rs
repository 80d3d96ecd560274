//! The quarantine: where `resolve` sets a receiver's divergent state aside,
//! `<target root>/zfs-nfs-replica-quarantine/<time>/…`. It is never
//! replicated, planned, size-checked, snapshotted or pruned; every listing
//! takes it out first ([`split_quarantine`]).

use crate::zfs::Listing;
use crate::zfs::names::is_at_or_below;

/// The quarantine's dataset name below a target root.
pub const QUARANTINE: &str = "zfs-nfs-replica-quarantine";
/// The hold on every capture snapshot.
pub const HOLD_TAG: &str = "zfs-nfs-replica-quarantine";

/// `<root>/zfs-nfs-replica-quarantine`.
pub fn container(root: &str) -> String {
    format!("{root}/{QUARANTINE}")
}

/// Take the quarantine subtree out of a listing (it is never replicated,
/// planned or size-checked); returns its datasets' names.
pub fn split_quarantine(listing: &mut Listing, root: &str) -> Vec<String> {
    let top = container(root);
    // What the quarantine keeps is not the replica: the pool's `used`, which
    // the size guards and the size history read, leaves it out (else the
    // first run after a resolve compares the source with the replica plus
    // the branch just set aside, and refuses).
    let kept = listing.datasets.get(&top).map(|q| q.used).unwrap_or(0);
    if let Some(r) = listing.datasets.get_mut(root) {
        r.used = r.used.saturating_sub(kept);
    }
    let names: Vec<String> = listing
        .datasets
        .keys()
        .filter(|n| is_at_or_below(n, &top))
        .cloned()
        .collect();
    for n in &names {
        listing.datasets.remove(n);
    }
    names
}
