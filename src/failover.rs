//! The `on_unhealthy = "failover"` policy: when a source pool of the master
//! is unhealthy, ask Proxmox HA to move the guest to a standby whose pools
//! are healthy (`POST /cluster/ha/resources/{sid}/migrate`). Anti-ping-pong:
//! when the guest arrived on this node (or this node handed it over) within
//! `[health] failover_cooldown`, a second health failure stops the guest
//! instead (`PUT /cluster/ha/resources/{sid}` with `state=stopped`): two
//! sick nodes must not throw it back and forth. The decision is pure
//! ([`choose`]); [`carry_out`] speaks to the API.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::pve::client::Client;
use crate::state::{FailoverRecord, Promotion, RoleRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Migrate {
        to: String,
    },
    Stop {
        why: String,
    },
    /// Nothing is asked of HA, and why.
    Stay {
        why: String,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Migrate { .. } => "migrate",
            Action::Stop { .. } => "stop",
            Action::Stay { .. } => "none",
        }
    }
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Did the guest arrive here, or leave from here, within the cooldown?
/// Returns the event that says so.
pub fn recent_move(
    now: DateTime<Utc>,
    cooldown: Duration,
    role: Option<&RoleRecord>,
    promotion: Option<&Promotion>,
    last_failover: Option<&FailoverRecord>,
) -> Option<String> {
    let within = |t: &str| {
        parse(t).is_some_and(|t| {
            now.signed_duration_since(t)
                .to_std()
                .is_ok_and(|d| d < cooldown)
        })
    };
    if let Some(r) = role
        && r.role == crate::report::RoleName::Master
        && let Some(s) = &r.since
        && within(s)
    {
        return Some(format!("this node became master at {s}"));
    }
    if let Some(p) = promotion
        && p.promoted
        && within(&p.time)
    {
        return Some(format!("the guest was promoted here at {}", p.time));
    }
    if let Some(f) = last_failover
        && f.ok
        && f.action != "none"
        && within(&f.time)
    {
        return Some(format!(
            "this node already asked HA to {} the guest at {}",
            f.action, f.time
        ));
    }
    None
}

/// What to ask HA. `healthy_peers`: standbys whose pools are all healthy,
/// in preference order. `ha_sid`: the guest's HA service, when HA manages it.
pub fn choose(recent: Option<String>, healthy_peers: &[String], ha_sid: Option<&str>) -> Action {
    if ha_sid.is_none() {
        return Action::Stay {
            why: "the guest is not HA-managed: HA cannot move it (alert only)".into(),
        };
    }
    if let Some(r) = recent {
        return Action::Stop {
            why: format!("second health failure within the cooldown ({r})"),
        };
    }
    match healthy_peers.first() {
        Some(p) => Action::Migrate { to: p.clone() },
        None => Action::Stay {
            why: "no standby with healthy pools: the guest stays here".into(),
        },
    }
}

/// Ask HA to carry out `action` for `sid`. Returns the API's answer in words.
pub async fn carry_out(client: &Client, sid: &str, action: &Action) -> Result<String, String> {
    match action {
        Action::Migrate { to } => client
            .post(
                &format!("/cluster/ha/resources/{sid}/migrate"),
                &format!("node={to}"),
            )
            .await
            .map(|v| format!("HA migrates {sid} to {to} ({v})"))
            .map_err(|e| e.to_string()),
        Action::Stop { .. } => client
            .put(&format!("/cluster/ha/resources/{sid}"), "state=stopped")
            .await
            .map(|_| format!("HA stops {sid} (requested state: stopped)"))
            .map_err(|e| e.to_string()),
        Action::Stay { why } => Ok(why.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse(s).unwrap()
    }

    fn role(since: Option<&str>) -> RoleRecord {
        RoleRecord {
            role: crate::report::RoleName::Master,
            master: "pve2".into(),
            since: since.map(String::from),
            checked: "2026-11-22T12:00:00Z".into(),
        }
    }

    #[test]
    fn recent_moves() {
        let now = at("2026-11-22T12:00:00Z");
        let hour = Duration::from_secs(3600);
        assert_eq!(recent_move(now, hour, None, None, None), None);
        assert_eq!(
            recent_move(now, hour, Some(&role(None)), None, None),
            None,
            "since unknown (first run after installing): not a recent arrival"
        );
        assert!(
            recent_move(
                now,
                hour,
                Some(&role(Some("2026-11-22T11:30:00Z"))),
                None,
                None
            )
            .unwrap()
            .contains("became master")
        );
        assert_eq!(
            recent_move(
                now,
                hour,
                Some(&role(Some("2026-11-22T10:30:00Z"))),
                None,
                None
            ),
            None
        );
        let p = Promotion {
            time: "2026-11-22T11:59:00Z".into(),
            node: "pve2".into(),
            guest: 103,
            promoted: true,
            actions: vec![],
            errors: vec![],
        };
        assert!(recent_move(now, hour, None, Some(&p), None).is_some());
        let f = FailoverRecord {
            time: "2026-11-22T11:10:00Z".into(),
            node: "pve2".into(),
            action: "migrate".into(),
            to: Some("pve1".into()),
            reasons: vec![],
            result: String::new(),
            ok: true,
        };
        assert!(recent_move(now, hour, None, None, Some(&f)).is_some());
        let failed = FailoverRecord { ok: false, ..f };
        assert_eq!(recent_move(now, hour, None, None, Some(&failed)), None);
    }

    #[test]
    fn choices() {
        let peers = vec!["pve1".to_string()];
        assert_eq!(
            choose(None, &peers, Some("ct:103")),
            Action::Migrate { to: "pve1".into() }
        );
        assert!(matches!(
            choose(Some("x".into()), &peers, Some("ct:103")),
            Action::Stop { .. }
        ));
        assert!(matches!(
            choose(None, &[], Some("ct:103")),
            Action::Stay { .. }
        ));
        assert!(matches!(choose(None, &peers, None), Action::Stay { .. }));
    }
}
