//! The master rules, pure: one check's observations in, "node X is master"
//! or the reason for doubt out. Any doubt is "nobody is master".

use super::answers::{ClusterStatus, GuestRow, GuestStatus, HaStatus};

/// What one check saw.
#[derive(Debug, Clone)]
pub struct Observation {
    pub status: ClusterStatus,
    pub guest: Option<GuestRow>,
    pub ha: HaStatus,
    /// The guest's own status, asked of this node when the guest is placed here.
    pub here: Option<GuestStatus>,
    pub vmlist: VmList,
}

/// The local `/etc/pve/.vmlist` cross-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmList {
    /// No such file (not a Proxmox node, or not mounted): no cross-check.
    Absent,
    /// Where it places the guest (None: not listed).
    Places(Option<String>),
    /// Present but unreadable or garbled: doubt.
    Bad(String),
}

/// What the rules need besides the observations.
#[derive(Debug, Clone)]
pub struct Context {
    pub vmid: u32,
    /// `[cluster] nodes`.
    pub nodes: Vec<String>,
    /// `[cluster] node`, when set.
    pub configured: Option<String>,
    pub hostname: Option<String>,
    /// The Proxmox `pre-start` hook: the guest is about to start here, so
    /// "stopped on this node" counts as running here.
    pub starting_here: bool,
}

/// The answer of one check: which node this is and which node is master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub local: String,
    pub master: String,
    /// The guest's HA service id (`ct:103`) when HA manages it.
    pub ha_sid: Option<String>,
}

/// HA states in which the service is between nodes or being recovered:
/// nobody is master (docs/facts.md §1).
const HA_IN_FLUX: &[&str] = &[
    "fence", "recovery", "migrate", "relocate", "freeze", "error",
];

/// Which node this is: the API's `local` row, else `[cluster] node`, else
/// the hostname; it must be one of `[cluster] nodes`.
pub fn local_node(status: &ClusterStatus, ctx: &Context) -> Result<String, String> {
    let local = match (status.local(), &ctx.configured) {
        (Some(api), Some(cfg)) if api != cfg => {
            return Err(format!(
                "the API says this node is `{api}`, but [cluster] node is `{cfg}`"
            ));
        }
        (Some(api), _) => api.to_string(),
        (None, Some(cfg)) => cfg.clone(),
        (None, None) => ctx
            .hostname
            .clone()
            .ok_or("/cluster/status has no `local` node row and the hostname is unknown")?,
    };
    if !ctx.nodes.contains(&local) {
        return Err(format!(
            "this node `{local}` is not one of [cluster] nodes ({})",
            ctx.nodes.join(", ")
        ));
    }
    Ok(local)
}

pub fn judge(obs: &Observation, ctx: &Context) -> Result<Verdict, String> {
    let vmid = ctx.vmid;
    let local = local_node(&obs.status, ctx)?;
    let cluster =
        obs.status.cluster.as_ref().ok_or(
            "/cluster/status has no cluster row: a standalone node cannot tell who is master",
        )?;
    match cluster.quorate {
        Some(true) => {}
        Some(false) => return Err(format!("cluster `{}` is not quorate", cluster.name)),
        None => return Err("/cluster/status does not say whether the cluster is quorate".into()),
    }
    let g = obs.guest.as_ref().ok_or_else(|| {
        format!(
            "guest {vmid} is not in /cluster/resources (it does not exist, or the token lacks VM.Audit on /vms)"
        )
    })?;
    let status = g.status.as_deref().unwrap_or("");
    let node_online = obs
        .status
        .nodes
        .iter()
        .find(|n| n.name == g.node)
        .and_then(|n| n.online);
    if status == "unknown" || node_online == Some(false) {
        return Err(format!(
            "guest {vmid} is on node `{}`, which is offline or unreachable (status `{status}`)",
            g.node
        ));
    }
    if !ctx.nodes.contains(&g.node) {
        return Err(format!(
            "guest {vmid} is on node `{}`, which is not one of [cluster] nodes",
            g.node
        ));
    }
    let here = g.node == local;
    let starting = here && ctx.starting_here;

    // HA: a managed guest is master material only when its service is
    // `started` on the node the resources list places it on.
    if obs.ha.quorate == Some(false) {
        return Err("the HA manager reports no quorum".into());
    }
    let sid = g.sid(vmid);
    let managed = g.hastate.is_some()
        || obs.ha.service.is_some()
        || obs.here.as_ref().and_then(|h| h.ha_managed) == Some(true);
    if managed {
        let svc = obs.ha.service.as_ref().ok_or_else(|| {
            format!(
                "guest {vmid} is HA-managed but /cluster/ha/status/current has no service {sid}"
            )
        })?;
        let state = svc.state.as_deref().unwrap_or("");
        if state != "started" {
            let why = if HA_IN_FLUX.contains(&state) {
                "the service is between nodes or being recovered"
            } else if state.is_empty() {
                "no state given"
            } else {
                "not `started`"
            };
            return Err(format!(
                "HA service {sid} is `{state}` on `{}` ({why})",
                svc.node
            ));
        }
        if svc.node != g.node {
            return Err(format!(
                "HA places {sid} on `{}` but /cluster/resources on `{}`",
                svc.node, g.node
            ));
        }
    }
    if let Some(l) = &g.lock {
        return Err(format!("guest {vmid} is locked (`{l}`) on `{}`", g.node));
    }
    let running_ok = |s: &str| s == "running" || (starting && s == "stopped");
    if !running_ok(status) {
        return Err(format!("guest {vmid} is `{status}` on `{}`", g.node));
    }
    if here {
        let h = obs.here.as_ref().ok_or_else(|| {
            format!(
                "no answer from /nodes/{local}/{}/{vmid}/status/current",
                g.kind
            )
        })?;
        if let Some(l) = &h.lock {
            return Err(format!("guest {vmid} is locked (`{l}`) on this node"));
        }
        if !running_ok(&h.status) {
            return Err(format!(
                "guest {vmid} is `{}` on this node (status/current)",
                h.status
            ));
        }
    }
    match &obs.vmlist {
        VmList::Absent => {}
        VmList::Bad(why) => return Err(format!("local .vmlist: {why}")),
        VmList::Places(None) => {
            return Err(format!("the local .vmlist does not list guest {vmid}"));
        }
        VmList::Places(Some(n)) if *n != g.node => {
            return Err(format!(
                "the local .vmlist places guest {vmid} on `{n}`, the API on `{}`",
                g.node
            ));
        }
        VmList::Places(Some(_)) => {}
    }
    Ok(Verdict {
        local,
        master: g.node.clone(),
        ha_sid: managed.then_some(sid),
    })
}

#[cfg(test)]
mod tests {
    use super::super::answers::*;
    use super::*;

    fn ctx() -> Context {
        Context {
            vmid: 103,
            nodes: vec!["pve1".into(), "pve2".into()],
            configured: None,
            hostname: Some("pve1".into()),
            starting_here: false,
        }
    }

    /// A healthy cluster seen from `local`, the guest running HA-managed on `at`.
    fn obs(local: &str, at: &str) -> Observation {
        Observation {
            status: ClusterStatus {
                cluster: Some(ClusterRow {
                    name: "lab".into(),
                    quorate: Some(true),
                }),
                nodes: ["pve1", "pve2"]
                    .iter()
                    .map(|n| NodeRow {
                        name: n.to_string(),
                        online: Some(true),
                        local: *n == local,
                    })
                    .collect(),
            },
            guest: Some(GuestRow {
                kind: "lxc".into(),
                node: at.into(),
                status: Some("running".into()),
                lock: None,
                hastate: Some("started".into()),
            }),
            ha: HaStatus {
                quorate: Some(true),
                service: Some(HaService {
                    node: at.into(),
                    state: Some("started".into()),
                }),
            },
            here: (local == at).then(|| GuestStatus {
                status: "running".into(),
                lock: None,
                ha_managed: Some(true),
            }),
            vmlist: VmList::Places(Some(at.into())),
        }
    }

    fn master(local: &str) -> Verdict {
        Verdict {
            local: local.into(),
            master: "pve1".into(),
            ha_sid: Some("ct:103".into()),
        }
    }

    #[test]
    fn master_and_standby() {
        assert_eq!(judge(&obs("pve1", "pve1"), &ctx()), Ok(master("pve1")));
        assert_eq!(judge(&obs("pve2", "pve1"), &ctx()), Ok(master("pve2")));
    }

    /// One case per doubt: (what breaks, words the reason must contain).
    #[test]
    fn every_doubt_is_nobody() {
        type Break = fn(&mut Observation, &mut Context);
        let cases: Vec<(&str, Break, &str)> = vec![
            (
                "no quorum",
                |o, _| o.status.cluster.as_mut().unwrap().quorate = Some(false),
                "not quorate",
            ),
            (
                "quorum unknown",
                |o, _| o.status.cluster.as_mut().unwrap().quorate = None,
                "does not say",
            ),
            ("standalone", |o, _| o.status.cluster = None, "standalone"),
            ("guest absent", |o, _| o.guest = None, "VM.Audit"),
            (
                "node dead",
                |o, _| o.guest.as_mut().unwrap().status = Some("unknown".into()),
                "offline",
            ),
            (
                "node offline",
                |o, _| o.status.nodes[0].online = Some(false),
                "offline",
            ),
            (
                "guest elsewhere",
                |o, _| {
                    o.guest.as_mut().unwrap().node = "pve3".into();
                },
                "not one of",
            ),
            (
                "stopped",
                |o, _| o.guest.as_mut().unwrap().status = Some("stopped".into()),
                "`stopped`",
            ),
            (
                "locked",
                |o, _| o.guest.as_mut().unwrap().lock = Some("backup".into()),
                "locked (`backup`)",
            ),
            (
                "locked here",
                |o, _| o.here.as_mut().unwrap().lock = Some("migrate".into()),
                "locked (`migrate`)",
            ),
            (
                "here stopped",
                |o, _| o.here.as_mut().unwrap().status = "stopped".into(),
                "on this node",
            ),
            ("here missing", |o, _| o.here = None, "status/current"),
            (
                "ha fence",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("fence".into()),
                "`fence`",
            ),
            (
                "ha recovery",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("recovery".into()),
                "between nodes",
            ),
            (
                "ha migrate",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("migrate".into()),
                "`migrate`",
            ),
            (
                "ha relocate",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("relocate".into()),
                "`relocate`",
            ),
            (
                "ha freeze",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("freeze".into()),
                "`freeze`",
            ),
            (
                "ha error",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("error".into()),
                "`error`",
            ),
            (
                "ha unknown state",
                |o, _| o.ha.service.as_mut().unwrap().state = Some("queued".into()),
                "not `started`",
            ),
            (
                "ha no state",
                |o, _| o.ha.service.as_mut().unwrap().state = None,
                "no state",
            ),
            (
                "ha elsewhere",
                |o, _| o.ha.service.as_mut().unwrap().node = "pve2".into(),
                "HA places",
            ),
            (
                "ha service missing",
                |o, _| o.ha.service = None,
                "has no service ct:103",
            ),
            (
                "ha no quorum",
                |o, _| o.ha.quorate = Some(false),
                "no quorum",
            ),
            (
                "vmlist elsewhere",
                |o, _| o.vmlist = VmList::Places(Some("pve2".into())),
                ".vmlist places",
            ),
            (
                "vmlist unlisted",
                |o, _| o.vmlist = VmList::Places(None),
                "does not list",
            ),
            (
                "vmlist garbled",
                |o, _| o.vmlist = VmList::Bad("not JSON".into()),
                "not JSON",
            ),
            (
                "node not configured",
                |o, _| o.status.nodes[0].name = "pve9".into(),
                "not one of [cluster] nodes",
            ),
            (
                "config disagrees",
                |_, c| c.configured = Some("pve2".into()),
                "[cluster] node is `pve2`",
            ),
        ];
        for (name, f, want) in cases {
            let (mut o, mut c) = (obs("pve1", "pve1"), ctx());
            f(&mut o, &mut c);
            match judge(&o, &c) {
                Ok(v) => panic!("{name}: judged {v:?}"),
                Err(e) => assert!(e.contains(want), "{name}: {e}"),
            }
        }
    }

    #[test]
    fn a_standby_is_only_sure_when_the_master_is() {
        let mut o = obs("pve2", "pve1");
        o.ha.service.as_mut().unwrap().state = Some("migrate".into());
        assert!(judge(&o, &ctx()).is_err());
        let mut o = obs("pve2", "pve1");
        o.guest.as_mut().unwrap().status = Some("stopped".into());
        assert!(judge(&o, &ctx()).is_err());
    }

    #[test]
    fn not_ha_managed_needs_no_ha_row() {
        let mut o = obs("pve1", "pve1");
        o.guest.as_mut().unwrap().hastate = None;
        o.ha.service = None;
        o.here.as_mut().unwrap().ha_managed = Some(false);
        let unmanaged = Verdict {
            ha_sid: None,
            ..master("pve1")
        };
        assert_eq!(judge(&o, &ctx()), Ok(unmanaged.clone()));
        // Without .vmlist (not mounted) there is no cross-check.
        o.vmlist = VmList::Absent;
        assert_eq!(judge(&o, &ctx()), Ok(unmanaged));
    }

    #[test]
    fn local_node_fallbacks() {
        let mut o = obs("pve1", "pve1");
        for n in &mut o.status.nodes {
            n.local = false;
        }
        assert_eq!(judge(&o, &ctx()), Ok(master("pve1")));
        let mut c = ctx();
        c.hostname = None;
        assert!(judge(&o, &c).unwrap_err().contains("hostname"));
        c.configured = Some("pve1".into());
        assert_eq!(judge(&o, &c), Ok(master("pve1")));
    }

    #[test]
    fn starting_here_accepts_stopped_on_this_node_only() {
        let mut o = obs("pve1", "pve1");
        o.guest.as_mut().unwrap().status = Some("stopped".into());
        o.here.as_mut().unwrap().status = "stopped".into();
        let mut c = ctx();
        assert!(judge(&o, &c).is_err());
        c.starting_here = true;
        assert_eq!(judge(&o, &c), Ok(master("pve1")));
        // Starting here does not excuse a lock or an HA state in flux.
        o.here.as_mut().unwrap().lock = Some("migrate".into());
        assert!(judge(&o, &c).is_err());
        // Nor does it make this node master when the guest is elsewhere.
        let mut o = obs("pve2", "pve1");
        o.guest.as_mut().unwrap().status = Some("stopped".into());
        assert!(judge(&o, &c).is_err());
    }
}
