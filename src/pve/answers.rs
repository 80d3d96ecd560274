//! Typed views of the API answers the master check reads, parsed strictly
//! from JSON values (shapes: docs/facts.md §1). Booleans arrive as
//! 0/1 integers; fields may be missing, and a missing field is `None`, never
//! a guessed default. A wrong type is an error naming the field.

use serde_json::{Map, Value};

/// `GET /cluster/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The `type: cluster` row; absent on a standalone node.
    pub cluster: Option<ClusterRow>,
    pub nodes: Vec<NodeRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRow {
    pub name: String,
    pub quorate: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub online: Option<bool>,
    /// The node that answered (`local: 1`).
    pub local: bool,
}

impl ClusterStatus {
    pub fn local(&self) -> Option<&str> {
        self.nodes.iter().find(|n| n.local).map(|n| n.name.as_str())
    }
}

/// The guest's row in `GET /cluster/resources?type=vm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRow {
    /// `lxc` or `qemu`.
    pub kind: String,
    pub node: String,
    /// `running`, `stopped`; `unknown` when its node is unreachable.
    pub status: Option<String>,
    pub lock: Option<String>,
    pub hastate: Option<String>,
}

impl GuestRow {
    /// The HA service id: `ct:103` for containers, `vm:103` for VMs.
    pub fn sid(&self, vmid: u32) -> String {
        let prefix = if self.kind == "qemu" { "vm" } else { "ct" };
        format!("{prefix}:{vmid}")
    }
}

/// `GET /cluster/ha/status/current`: the quorum row and the guest's service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HaStatus {
    pub quorate: Option<bool>,
    pub service: Option<HaService>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaService {
    pub node: String,
    /// `crm_state`, or `state` when the former is missing.
    pub state: Option<String>,
}

/// `GET /nodes/{node}/{lxc|qemu}/{vmid}/status/current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestStatus {
    pub status: String,
    pub lock: Option<String>,
    pub ha_managed: Option<bool>,
}

fn rows<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a Map<String, Value>>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{what}: `data` is not a list"))?;
    arr.iter()
        .enumerate()
        .map(|(i, r)| {
            r.as_object()
                .ok_or_else(|| format!("{what}: row {i} is not an object"))
        })
        .collect()
}

/// A Proxmox boolean: 0/1 (what the API sends) or true/false.
fn flag(row: &Map<String, Value>, key: &str, what: &str) -> Result<Option<bool>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(other) => Err(format!("{what}: `{key}` is {other}, not a boolean (0/1)")),
    }
}

fn text(row: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{what}: `{key}` is {other}, not a string")),
    }
}

fn required(row: &Map<String, Value>, key: &str, what: &str) -> Result<String, String> {
    text(row, key, what)?.ok_or_else(|| format!("{what}: a row has no `{key}`"))
}

pub fn parse_cluster_status(v: &Value) -> Result<ClusterStatus, String> {
    const W: &str = "/cluster/status";
    let mut out = ClusterStatus {
        cluster: None,
        nodes: Vec::new(),
    };
    for r in rows(v, W)? {
        match text(r, "type", W)?.as_deref() {
            Some("cluster") => {
                if out.cluster.is_some() {
                    return Err(format!("{W}: two `cluster` rows"));
                }
                out.cluster = Some(ClusterRow {
                    name: text(r, "name", W)?.unwrap_or_default(),
                    quorate: flag(r, "quorate", W)?,
                });
            }
            Some("node") => out.nodes.push(NodeRow {
                name: required(r, "name", W)?,
                online: flag(r, "online", W)?,
                local: flag(r, "local", W)?.unwrap_or(false),
            }),
            _ => {}
        }
    }
    if out.nodes.iter().filter(|n| n.local).count() > 1 {
        return Err(format!("{W}: more than one node row says `local`"));
    }
    Ok(out)
}

/// The guest's row, if the answer has one. Two rows for one vmid is an error.
pub fn parse_resources(v: &Value, vmid: u32) -> Result<Option<GuestRow>, String> {
    const W: &str = "/cluster/resources";
    let mut found = None;
    for r in rows(v, W)? {
        let id = match r.get("vmid") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        if id != Some(u64::from(vmid)) {
            continue;
        }
        let kind = required(r, "type", W)?;
        if kind != "lxc" && kind != "qemu" {
            continue;
        }
        if found.is_some() {
            return Err(format!("{W}: two rows for guest {vmid}"));
        }
        found = Some(GuestRow {
            kind,
            node: required(r, "node", W)?,
            status: text(r, "status", W)?,
            lock: text(r, "lock", W)?,
            hastate: text(r, "hastate", W)?,
        });
    }
    Ok(found)
}

pub fn parse_ha_status(v: &Value, sid: &str) -> Result<HaStatus, String> {
    const W: &str = "/cluster/ha/status/current";
    let mut out = HaStatus::default();
    for r in rows(v, W)? {
        match text(r, "type", W)?.as_deref() {
            Some("quorum") => out.quorate = flag(r, "quorate", W)?,
            Some("service") => {
                let this = text(r, "sid", W)?.or(text(r, "id", W)?
                    .map(|id| id.strip_prefix("service:").unwrap_or(&id).to_string()));
                if this.as_deref() != Some(sid) {
                    continue;
                }
                if out.service.is_some() {
                    return Err(format!("{W}: two rows for service {sid}"));
                }
                out.service = Some(HaService {
                    node: required(r, "node", W)?,
                    state: text(r, "crm_state", W)?.or(text(r, "state", W)?),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

pub fn parse_guest_status(v: &Value, what: &str) -> Result<GuestStatus, String> {
    let r = v
        .as_object()
        .ok_or_else(|| format!("{what}: `data` is not an object"))?;
    let ha_managed = match r.get("ha") {
        Some(Value::Object(ha)) => flag(ha, "managed", what)?,
        _ => None,
    };
    Ok(GuestStatus {
        status: required(r, "status", what)?,
        lock: text(r, "lock", what)?,
        ha_managed,
    })
}

/// `/etc/pve/.vmlist`: the node the guest is configured on, if listed.
pub fn parse_vmlist(text: &str, vmid: u32) -> Result<Option<String>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let ids = v
        .get("ids")
        .and_then(Value::as_object)
        .ok_or("no `ids` object")?;
    match ids.get(&vmid.to_string()) {
        None => Ok(None),
        Some(Value::Object(g)) => g
            .get("node")
            .and_then(Value::as_str)
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("guest {vmid} has no `node`")),
        Some(_) => Err(format!("guest {vmid}'s entry is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_status_recorded_shape() {
        let v = json!([{"type":"cluster","name":"lab","nodes":2,"quorate":1,"version":5},
            {"type":"node","name":"pve1","nodeid":1,"ip":"10.0.0.11","online":1,"local":1},
            {"type":"node","name":"pve2","nodeid":2,"ip":"10.0.0.12","online":0,"local":0}]);
        let s = parse_cluster_status(&v).unwrap();
        assert_eq!(
            s.cluster,
            Some(ClusterRow {
                name: "lab".into(),
                quorate: Some(true)
            })
        );
        assert_eq!(s.local(), Some("pve1"));
        assert_eq!(s.nodes[1].online, Some(false));
    }

    #[test]
    fn booleans_as_integers_or_json_booleans_and_nothing_else() {
        let t = json!([{"type":"cluster","name":"lab","quorate":true}]);
        assert_eq!(
            parse_cluster_status(&t).unwrap().cluster.unwrap().quorate,
            Some(true)
        );
        let missing = json!([{"type":"cluster","name":"lab"}]);
        assert_eq!(
            parse_cluster_status(&missing)
                .unwrap()
                .cluster
                .unwrap()
                .quorate,
            None
        );
        for bad in [json!(2), json!("1"), json!([1])] {
            let v = json!([{"type":"cluster","name":"lab","quorate":bad}]);
            let e = parse_cluster_status(&v).unwrap_err();
            assert!(
                e.contains("`quorate`") && e.contains("not a boolean"),
                "{e}"
            );
        }
    }

    #[test]
    fn standalone_node_has_no_cluster_row() {
        let v = json!([{"type":"node","name":"pve1","nodeid":0,"online":1,"local":1}]);
        let s = parse_cluster_status(&v).unwrap();
        assert!(s.cluster.is_none());
        assert_eq!(s.local(), Some("pve1"));
    }

    #[test]
    fn resources_pick_the_guest() {
        let v = json!([
            {"id":"qemu/100","type":"qemu","vmid":100,"node":"pve1","status":"running"},
            {"id":"lxc/103","type":"lxc","vmid":103,"node":"pve2","status":"running","hastate":"started","lock":"backup"},
            {"id":"storage/pve1/local","type":"storage","node":"pve1"}
        ]);
        let g = parse_resources(&v, 103).unwrap().unwrap();
        assert_eq!(g.node, "pve2");
        assert_eq!(g.lock.as_deref(), Some("backup"));
        assert_eq!(g.hastate.as_deref(), Some("started"));
        assert_eq!(g.sid(103), "ct:103");
        assert_eq!(parse_resources(&v, 104).unwrap(), None);
        // A guest on a dead node: only id, vmid, node, type, status.
        let dead =
            json!([{"id":"lxc/103","vmid":103,"node":"pve1","type":"lxc","status":"unknown"}]);
        let g = parse_resources(&dead, 103).unwrap().unwrap();
        assert_eq!(
            (g.status.as_deref(), g.hastate, g.lock),
            (Some("unknown"), None, None)
        );
        let twice = json!([{"type":"lxc","vmid":103,"node":"pve1"},{"type":"lxc","vmid":103,"node":"pve2"}]);
        assert!(
            parse_resources(&twice, 103)
                .unwrap_err()
                .contains("two rows")
        );
        let no_node = json!([{"type":"lxc","vmid":103}]);
        assert!(
            parse_resources(&no_node, 103)
                .unwrap_err()
                .contains("`node`")
        );
        assert!(parse_resources(&json!({"a":1}), 103).is_err());
    }

    #[test]
    fn ha_status_service_and_quorum() {
        let v = json!([{"id":"quorum","type":"quorum","node":"pve1","status":"OK","quorate":1},
            {"id":"master","type":"master","node":"pve1"},
            {"id":"service:vm:103","type":"service","sid":"vm:103","node":"pve2","crm_state":"stopped","state":"stopped"},
            {"id":"service:ct:103","type":"service","sid":"ct:103","node":"pve1","crm_state":"started","state":"started","request_state":"started"}]);
        let h = parse_ha_status(&v, "ct:103").unwrap();
        assert_eq!(h.quorate, Some(true));
        assert_eq!(
            h.service,
            Some(HaService {
                node: "pve1".into(),
                state: Some("started".into())
            })
        );
        let only_state =
            json!([{"id":"service:ct:103","type":"service","node":"pve1","state":"fence"}]);
        assert_eq!(
            parse_ha_status(&only_state, "ct:103")
                .unwrap()
                .service
                .unwrap()
                .state
                .as_deref(),
            Some("fence")
        );
        assert_eq!(
            parse_ha_status(&json!([]), "ct:103").unwrap(),
            HaStatus::default()
        );
    }

    #[test]
    fn guest_status_and_vmlist() {
        let g = parse_guest_status(
            &json!({"vmid":103,"status":"running","lock":"migrate","ha":{"managed":1,"state":"started"}}),
            "w",
        )
        .unwrap();
        assert_eq!(g.lock.as_deref(), Some("migrate"));
        assert_eq!(g.ha_managed, Some(true));
        assert!(
            parse_guest_status(&json!({"vmid":103}), "w")
                .unwrap_err()
                .contains("`status`")
        );
        let vl = r#"{"version":42,"ids":{"103":{"node":"pve1","type":"lxc","version":7}}}"#;
        assert_eq!(parse_vmlist(vl, 103).unwrap().as_deref(), Some("pve1"));
        assert_eq!(parse_vmlist(vl, 104).unwrap(), None);
        assert!(parse_vmlist("{\"ids\":", 103).is_err());
        assert!(parse_vmlist(r#"{"ids":{"103":{"type":"lxc"}}}"#, 103).is_err());
    }
}
