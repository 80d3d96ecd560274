//! The handover: a planned migration that loses nothing.
//!
//! NFS clients write until the guest stops, so the old master always holds
//! writes made after its last snapshot. Proxmox moves a container by
//! stopping it on the old node, moving its config, and starting it on the
//! new one, whose `pre-start` hookscript runs first and may delay the start
//! (pve-container `vm_start`: `exec_hookscript(..., 'pre-start', 1)`, no
//! time limit of its own). So, in the new node's `pre-start`:
//!
//! 1. the new node records that it expects a handover from the old master
//!    ([`expect`]: its role answer then lets exactly that node write);
//! 2. it asks the old master, over ssh, to hand over
//!    (`zfs-nfs-replica handover --to NEW --within SECS`); the old master
//!    checks that the cluster places the guest on NEW, turns its own sanoid
//!    off, takes one snapshot (at one instant) of every dataset written
//!    since its newest snapshot, makes its datasets read-only, and sends
//!    the increments to NEW like any run; a pool whose copy on NEW
//!    diverged (NEW crashed as master once, and nobody resolved since) is
//!    first set aside in NEW's quarantine, as `resolve --keep-divergent`
//!    does, so the guest never starts with that older branch;
//! 3. the new node promotes itself (writable, mounted, sanoid on) and the
//!    guest starts with every byte the old master had.
//!
//! Bounded by `[hook] handover_timeout`; past it, or when the old master
//! does not answer (a crash), the new node stops every receive into its
//! pools, promotes at once, and records that no handover happened: what is
//! then left on the old master is a divergence, kept and resolved as usual.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A handover report's result when the node asked was not master.
pub const NOT_MASTER: &str = "not-master";

/// `<run_dir>/handover.json`: the node a `pre-start` waits for, and until when.
const MARKER: &str = "handover.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    from: String,
    /// Seconds since the epoch.
    until: u64,
}

fn marker(run_dir: &Path) -> PathBuf {
    run_dir.join(MARKER)
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This node waits for `from`'s handover until `until`.
pub fn expect(run_dir: &Path, from: &str, until: SystemTime) -> Result<(), String> {
    std::fs::create_dir_all(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let m = Marker {
        from: from.to_string(),
        until: epoch(until),
    };
    let text = serde_json::to_string(&m).map_err(|e| e.to_string())?;
    crate::files::replace_atomically(&marker(run_dir), text.as_bytes(), 0o600, None)
        .map_err(|e| format!("{}: {e}", marker(run_dir).display()))
}

/// The node whose handover this node waits for right now, if any.
pub fn expected_from(run_dir: &Path) -> Option<String> {
    let text = crate::files::read_text(&marker(run_dir), 4096).ok()?;
    let m: Marker = serde_json::from_str(&text).ok()?;
    (m.until > epoch(SystemTime::now())).then_some(m.from)
}

/// No handover expected any more.
pub fn clear(run_dir: &Path) {
    let _ = std::fs::remove_file(marker(run_dir));
}

/// What the old master did, as it reports it (JSON on its stdout).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The handover snapshot's name, when something had changed.
    pub snapshot: Option<String>,
    /// The datasets it snapshotted (written since their newest snapshot).
    pub datasets: Vec<String>,
    pub bytes: u64,
    pub seconds: f64,
    /// The run's result word (`replicated`, `nothing-to-do`, ...).
    pub result: String,
    /// Pools whose copy on the new master had diverged (left over from an
    /// earlier crash): that copy was set aside in the quarantine, as
    /// `resolve POOL --keep-divergent` does, and the old master's data sent,
    /// so that the guest starts with what it served a moment ago.
    #[serde(default)]
    pub quarantined: Vec<String>,
    /// Why it did not complete.
    pub error: Option<String>,
}

impl Report {
    pub fn complete(&self) -> bool {
        self.error.is_none()
    }

    /// One line for people and the guest's start task log.
    pub fn line(&self) -> String {
        match &self.error {
            None if self.result == NOT_MASTER => format!(
                "{} was not master: nothing to hand over ({:.1}s)",
                self.from, self.seconds
            ),
            None if self.datasets.is_empty() => format!(
                "handover from {}: nothing written since its last snapshot; in sync in {:.1}s{}",
                self.from,
                self.seconds,
                self.quarantine_note()
            ),
            None => format!(
                "handover from {}: @{} of {} dataset(s), {} sent in {:.1}s{}",
                self.from,
                self.snapshot.as_deref().unwrap_or("?"),
                self.datasets.len(),
                crate::units::human_bytes(self.bytes),
                self.seconds,
                self.quarantine_note()
            ),
            Some(e) => format!(
                "handover from {} did not complete: {e}{}",
                self.from,
                self.quarantine_note()
            ),
        }
    }

    fn quarantine_note(&self) -> String {
        if self.quarantined.is_empty() {
            String::new()
        } else {
            format!(
                "; this node's diverged copy of {} kept in the quarantine (`zfs-nfs-replica diverged` lists it)",
                self.quarantined.join(", ")
            )
        }
    }
}

/// The snapshot a handover takes: not sanoid's (`autosnap_`), so its
/// pruning never takes it; it is the base of the next incremental.
pub fn snapshot_name(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "zfs-nfs-replica-handover_{}",
        now.format("%Y-%m-%d_%H:%M:%S")
    )
}

/// The deadline the old master gets, out of the new node's budget: what is
/// left of it minus a margin for the answer to come back.
pub fn within(budget: Duration, spent: Duration) -> Duration {
    budget
        .saturating_sub(spent)
        .saturating_sub(Duration::from_secs(3))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_one_node_until_its_time() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(expected_from(d.path()), None);
        expect(
            d.path(),
            "pve1",
            SystemTime::now() + Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(expected_from(d.path()).as_deref(), Some("pve1"));
        expect(d.path(), "pve1", SystemTime::now() - Duration::from_secs(1)).unwrap();
        assert_eq!(expected_from(d.path()), None, "expired");
        clear(d.path());
        assert_eq!(expected_from(d.path()), None);
    }

    #[test]
    fn names_and_budgets() {
        let t = chrono::DateTime::from_timestamp(1_796_000_000, 0).unwrap();
        assert_eq!(
            snapshot_name(t),
            "zfs-nfs-replica-handover_2026-11-30_00:53:20"
        );
        assert_eq!(
            within(Duration::from_secs(600), Duration::from_secs(5)),
            Duration::from_secs(592)
        );
        assert_eq!(
            within(Duration::from_secs(2), Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }
}
