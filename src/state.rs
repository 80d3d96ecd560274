//! This node's records: its role and since when, its last promotion and
//! failover, the operator's actions. Always replaced atomically
//! ([`crate::files`]), so a crash leaves the old or the new content, never
//! half of one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::files::{JsonFileError, load_json, save_json};
use crate::report::RoleName;

/// The last promotion of this node (the `pre-start` hook), for the operator
/// and for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Promotion {
    pub time: String,
    pub node: String,
    pub guest: u32,
    pub promoted: bool,
    /// What was done, one line each; or why nothing was.
    pub actions: Vec<String>,
    pub errors: Vec<String>,
}

pub const PROMOTION_FILE: &str = "last-promotion.json";

pub fn record_promotion(state_dir: &Path, p: &Promotion) -> Result<(), JsonFileError> {
    save_json(&state_dir.join(PROMOTION_FILE), p)
}

/// When each pool was last listed in full towards each peer, by a run that
/// completed (pool -> peer -> RFC 3339 time): between two of those a timer
/// run may use the fast listing (`[replication] full_listing_every`).
pub type FullListings = BTreeMap<String, BTreeMap<String, String>>;

pub const FULL_LISTINGS_FILE: &str = "full-listings.json";

pub fn load_full_listings(state_dir: &Path) -> Result<Option<FullListings>, JsonFileError> {
    load_json(&state_dir.join(FULL_LISTINGS_FILE))
}

/// Record that `pool` was listed in full towards `peer` now. An unreadable
/// old record is replaced: it only ever costs a full listing.
pub fn record_full_listing(state_dir: &Path, pool: &str, peer: &str) -> Result<(), JsonFileError> {
    let mut all = load_full_listings(state_dir)
        .ok()
        .flatten()
        .unwrap_or_default();
    all.entry(pool.to_string())
        .or_default()
        .insert(peer.to_string(), crate::units::now_stamp());
    save_json(&state_dir.join(FULL_LISTINGS_FILE), &all)
}

/// This node's last sure role, and since when: what `status` shows and
/// what the failover cooldown reads ("did the guest just arrive here?").
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RoleRecord {
    /// `master` or `standby` (a run that was not sure records nothing).
    pub role: RoleName,
    /// The master node, as the checks said.
    pub master: String,
    /// When this node was first seen in this role; None when unknown (the
    /// first run after installation).
    pub since: Option<String>,
    /// The last run that confirmed it.
    pub checked: String,
}

pub const ROLE_FILE: &str = "role.json";

pub fn load_role(state_dir: &Path) -> Result<Option<RoleRecord>, JsonFileError> {
    load_json(&state_dir.join(ROLE_FILE))
}

/// Record a sure role. `since` moves only when the role (or the master)
/// changed; an unreadable old record counts as unknown, never as a change.
pub fn record_role(
    state_dir: &Path,
    role: RoleName,
    master: &str,
) -> Result<RoleRecord, JsonFileError> {
    let now = crate::units::now_stamp();
    let since = match load_role(state_dir) {
        Ok(Some(old)) if old.role == role && old.master == master => old.since,
        Ok(Some(_)) => Some(now.clone()),
        Ok(None) | Err(_) => None,
    };
    let rec = RoleRecord {
        role,
        master: master.to_string(),
        since,
        checked: now,
    };
    save_json(&state_dir.join(ROLE_FILE), &rec)?;
    Ok(rec)
}

pub fn load_promotion(state_dir: &Path) -> Result<Option<Promotion>, JsonFileError> {
    load_json(&state_dir.join(PROMOTION_FILE))
}

/// What the failover policy did (or decided not to do), last one only.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FailoverRecord {
    pub time: String,
    pub node: String,
    /// `migrate`, `stop` or `none`.
    pub action: String,
    pub to: Option<String>,
    /// The unhealthy pools and why.
    pub reasons: Vec<String>,
    /// What happened: the API's answer, or why nothing was asked.
    pub result: String,
    pub ok: bool,
}

pub const FAILOVER_FILE: &str = "last-failover.json";

pub fn load_failover(state_dir: &Path) -> Result<Option<FailoverRecord>, JsonFileError> {
    load_json(&state_dir.join(FAILOVER_FILE))
}

pub fn record_failover(state_dir: &Path, r: &FailoverRecord) -> Result<(), JsonFileError> {
    save_json(&state_dir.join(FAILOVER_FILE), r)
}

/// One `resolve` or `adopt` the operator ran from this node, for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OperatorAction {
    pub time: String,
    /// `resolve` or `adopt`.
    pub action: String,
    pub pool: String,
    pub peer: String,
    /// The dataset it was asked about (receiver name).
    pub dataset: String,
    /// For `resolve`: `<root>/zfs-nfs-replica-quarantine/<time>`.
    pub quarantine: Option<String>,
    /// Every step, as run, in order.
    pub steps: Vec<String>,
    pub complete: bool,
    pub error: Option<String>,
}

pub const ACTIONS_FILE: &str = "operator-actions.json";
/// Kept per file: the newest ones.
const MAX_ACTIONS: usize = 100;

/// The operator actions recorded on this node, oldest first. A file that
/// does not parse is an error naming it (nothing is overwritten).
pub fn load_actions(state_dir: &Path) -> Result<Vec<OperatorAction>, JsonFileError> {
    Ok(load_json(&state_dir.join(ACTIONS_FILE))?.unwrap_or_default())
}

pub fn record_action(state_dir: &Path, a: &OperatorAction) -> Result<(), JsonFileError> {
    let mut all = load_actions(state_dir)?;
    all.push(a.clone());
    let extra = all.len().saturating_sub(MAX_ACTIONS);
    all.drain(..extra);
    save_json(&state_dir.join(ACTIONS_FILE), &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_file() {
        use crate::files::replace_atomically;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "old").unwrap();
        replace_atomically(&p, b"new", 0o640, None).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // Into a directory that does not exist: an error, nothing created.
        let e = replace_atomically(&d.path().join("no/such"), b"x", 0o644, None);
        assert!(e.is_err());
    }

    #[test]
    fn promotion_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = Promotion {
            time: "2026-11-21T14:00:00Z".into(),
            node: "pve2".into(),
            guest: 103,
            promoted: true,
            actions: vec!["zfs inherit readonly zpool1".into()],
            errors: vec![],
        };
        record_promotion(&d.path().join("state"), &p).unwrap();
        let back: Promotion = serde_json::from_str(
            &std::fs::read_to_string(d.path().join("state").join(PROMOTION_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(back, p);
    }
}

#[cfg(test)]
mod action_tests {
    use super::*;

    #[test]
    fn actions_append_and_a_garbled_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let a = OperatorAction {
            time: "2026-11-22T17:00:00Z".into(),
            action: "resolve".into(),
            pool: "zpool1".into(),
            peer: "pve1".into(),
            dataset: "zpool1/a".into(),
            quarantine: Some("zpool1/zfs-nfs-replica-quarantine/T".into()),
            steps: vec!["zfs snapshot -r x@y".into()],
            complete: true,
            error: None,
        };
        record_action(d.path(), &a).unwrap();
        record_action(d.path(), &a).unwrap();
        assert_eq!(load_actions(d.path()).unwrap(), vec![a.clone(), a.clone()]);
        std::fs::write(d.path().join(ACTIONS_FILE), "[{").unwrap();
        let e = record_action(d.path(), &a).unwrap_err().to_string();
        assert!(e.contains(ACTIONS_FILE), "{e}");
        assert_eq!(
            std::fs::read_to_string(d.path().join(ACTIONS_FILE)).unwrap(),
            "[{"
        );
    }
}

#[cfg(test)]
mod role_tests {
    use super::*;

    #[test]
    fn since_moves_only_on_a_change() {
        let d = tempfile::tempdir().unwrap();
        let first = record_role(d.path(), RoleName::Master, "pve1").unwrap();
        assert_eq!(first.since, None, "first run: unknown since when");
        let again = record_role(d.path(), RoleName::Master, "pve1").unwrap();
        assert_eq!(again.since, None);
        let changed = record_role(d.path(), RoleName::Standby, "pve2").unwrap();
        assert!(changed.since.is_some());
        let kept = record_role(d.path(), RoleName::Standby, "pve2").unwrap();
        assert_eq!(kept.since, changed.since);
        std::fs::write(d.path().join(ROLE_FILE), "garbage").unwrap();
        assert!(load_role(d.path()).is_err());
        assert_eq!(
            record_role(d.path(), RoleName::Master, "pve1")
                .unwrap()
                .since,
            None
        );
    }
}
