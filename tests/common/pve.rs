//! A stand-in for the Proxmox VE API: a real HTTPS server (its own CA, node
//! certificates with the SANs Proxmox issues) that answers the endpoints the
//! tool uses with the shapes in docs/facts.md. Tests change the
//! cluster state (move the guest, crash a node, lose quorum, HA states) and
//! inject faults (slow or hanging answers, 401, 5xx, garbage).
//!
//! One listener per node, sharing one cluster state: each answers as that
//! node's local API (`"local":1` on its own row), like `https://127.0.0.1:8006`
//! on a real node.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// The address the lab nodes reach their API stand-in at (qemu `guestfwd`).
pub const LAB_API_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    None,
    /// Answer every request with this status and body.
    Status(u16, String),
    /// Accept, read the request, never answer.
    Hang,
    /// Answer after this delay.
    Slow(Duration),
    /// `200` with a body that is not JSON.
    Garbage,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub ip: String,
    pub online: bool,
}

/// A change to the cluster state, applied by a scenario step.
pub type Step = fn(&mut State);

#[derive(Debug, Clone)]
pub struct State {
    pub cluster: String,
    pub nodes: BTreeMap<String, Node>,
    pub quorate: bool,
    pub vmid: u32,
    /// Where the guest is configured (None: absent, as when the token lacks VM.Audit).
    pub guest_node: Option<String>,
    /// `running`, `stopped`; `unknown` is derived when its node is offline.
    pub guest_status: String,
    pub lock: Option<String>,
    pub ha_managed: bool,
    /// HA `crm_state` of the guest's service.
    pub crm_state: String,
    pub fault: Fault,
    /// The fault applies only to requests whose path contains this.
    pub fault_only: Option<&'static str>,
    /// Requests seen, as `NODE METHOD PATH` (`NODE METHOD PATH BODY` for
    /// POST and PUT).
    pub log: Vec<String>,
    /// Scenario steps: when request number N+1 arrives (requests 1..=N have
    /// already read the state), apply the change.
    pub after: Vec<(usize, Step)>,
    /// Edit an answer's `data` before it is sent (drop fields, change types).
    pub edit: Option<fn(&str, &mut Value)>,
    /// Split brain: each listed node's own API places the guest on that
    /// node (every node believes it hosts the guest), whatever
    /// `guest_node` says.
    pub each_its_own: Vec<String>,
    /// Proxmox's permission model (None: every token right, as before).
    pub access: Option<Access>,
}

/// Proxmox's permission model, as far as the tool's endpoints need it
/// (pve-access-control, pveum(1)): a role is a set of privileges; an ACL
/// entry gives a role to a user or a token on a path and below it; a
/// privilege-separated token (`--privsep 1`, the default) holds only what
/// both it and its user hold.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub roles: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// (path, user or token id, role).
    pub acl: Vec<(String, String, String)>,
    /// Token id (`USER!NAME`) -> privilege-separated.
    pub tokens: BTreeMap<String, bool>,
}

impl Access {
    /// The built-in roles the recipes use.
    pub fn new() -> Access {
        let set = |p: &[&str]| p.iter().map(|x| x.to_string()).collect();
        let mut roles = BTreeMap::new();
        roles.insert(
            "PVEAuditor".to_string(),
            set(&[
                "Datastore.Audit",
                "Mapping.Audit",
                "Pool.Audit",
                "SDN.Audit",
                "Sys.Audit",
                "VM.Audit",
            ]),
        );
        roles.insert("NoAccess".to_string(), set(&[]));
        Access {
            roles,
            ..Access::default()
        }
    }

    fn holds(&self, who: &str, path: &str, privilege: &str) -> bool {
        self.acl.iter().any(|(p, w, role)| {
            w == who
                && (p == "/" || path == p || path.starts_with(&format!("{p}/")))
                && self.roles.get(role).is_some_and(|r| r.contains(privilege))
        })
    }

    /// May the token `id` use `privilege` on `path`?
    pub fn allows(&self, id: &str, path: &str, privilege: &str) -> bool {
        let Some(&privsep) = self.tokens.get(id) else {
            return false;
        };
        let user = id.split('!').next().unwrap_or(id);
        let by_user = self.holds(user, path, privilege);
        if privsep {
            by_user && self.holds(id, path, privilege)
        } else {
            by_user
        }
    }

    /// One `pveum` command line, as Proxmox applies it: the subset the
    /// README's recipes use (`user add`, `user token add`, `role add`,
    /// `acl modify`). Anything else, or an option pveum does not have, is
    /// an error, as it would be on a real node.
    pub fn pveum(&mut self, line: &str) -> Result<(), String> {
        let words = shell_words(line.split(" #").next().unwrap_or(line))?;
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let opts = |from: usize| -> Result<BTreeMap<&str, &str>, String> {
            let mut m = BTreeMap::new();
            let mut i = from;
            while i < w.len() {
                let k = w[i]
                    .strip_prefix("--")
                    .ok_or_else(|| format!("{line}: unexpected `{}`", w[i]))?;
                let v = w
                    .get(i + 1)
                    .ok_or_else(|| format!("{line}: --{k} needs a value"))?;
                m.insert(k, *v);
                i += 2;
            }
            Ok(m)
        };
        let list = |v: &str| -> Vec<String> {
            v.split([',', ';', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        match w.as_slice() {
            ["pveum", "user", "add", _user, ..] => {
                let o = opts(4)?;
                if let Some(k) = o
                    .keys()
                    .find(|k| !["comment", "email", "password"].contains(k))
                {
                    return Err(format!("{line}: pveum user add has no --{k}"));
                }
            }
            ["pveum", "user", "token", "add", user, name, ..] => {
                let o = opts(6)?;
                if let Some(k) = o
                    .keys()
                    .find(|k| !["privsep", "comment", "expire"].contains(k))
                {
                    return Err(format!("{line}: pveum user token add has no --{k}"));
                }
                let privsep = o.get("privsep").is_none_or(|v| *v != "0");
                self.tokens.insert(format!("{user}!{name}"), privsep);
            }
            ["pveum", "role", "add", name, ..] => {
                let o = opts(4)?;
                let privs = o
                    .get("privs")
                    .ok_or_else(|| format!("{line}: --privs missing"))?;
                self.roles
                    .insert(name.to_string(), list(privs).into_iter().collect());
            }
            ["pveum", "acl", "modify", path, ..] => {
                let o = opts(4)?;
                if let Some(k) = o
                    .keys()
                    .find(|k| !["roles", "users", "tokens", "groups", "propagate"].contains(k))
                {
                    return Err(format!("{line}: pveum acl modify has no --{k}"));
                }
                let roles = o
                    .get("roles")
                    .ok_or_else(|| format!("{line}: --roles missing"))?;
                for role in list(roles) {
                    if !self.roles.contains_key(&role) {
                        return Err(format!("{line}: role `{role}` does not exist"));
                    }
                    for who in ["users", "tokens"]
                        .iter()
                        .filter_map(|k| o.get(k))
                        .flat_map(|v| list(v))
                    {
                        self.acl.push((path.to_string(), who, role.clone()));
                    }
                }
            }
            _ => return Err(format!("{line}: not a pveum command this model knows")),
        }
        Ok(())
    }
}

/// Split a command line as a POSIX shell would (plain words, '...' and
/// "..." quotes); enough for the README's recipes.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            '\'' | '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(x) if x == c => break,
                        Some(x) => w.push(x),
                        None => return Err(format!("unterminated quote in {line}")),
                    }
                }
            }
            x => cur.get_or_insert_with(String::new).push(x),
        }
    }
    out.extend(cur);
    Ok(out)
}

pub struct FakePve {
    pub ca_pem: String,
    pub ca_file: tempfile::NamedTempFile,
    /// Node name -> port on 127.0.0.1.
    pub ports: BTreeMap<String, u16>,
    pub token: String,
    /// Node name -> its certificate (DER).
    pub certs: BTreeMap<String, Vec<u8>>,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakePve {
    /// `nodes`: (name, ip). The guest starts running, HA-managed, on the first node.
    pub fn start(nodes: &[(&str, &str)], vmid: u32) -> FakePve {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Proxmox Virtual Environment");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "PVE Cluster Manager CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let state = Arc::new(Mutex::new(State {
            cluster: "lab".into(),
            nodes: nodes
                .iter()
                .map(|(n, ip)| {
                    (
                        n.to_string(),
                        Node {
                            ip: ip.to_string(),
                            online: true,
                        },
                    )
                })
                .collect(),
            quorate: true,
            vmid,
            guest_node: Some(nodes[0].0.to_string()),
            guest_status: "running".into(),
            lock: None,
            ha_managed: true,
            crm_state: "started".into(),
            fault: Fault::None,
            fault_only: None,
            log: Vec::new(),
            after: Vec::new(),
            edit: None,
            each_its_own: Vec::new(),
            access: None,
        }));
        let token = "repl@pve!ro=5e1c1d2a-0b7e-4f00-9b2f-lab0token0000".to_string();
        let mut listeners = Vec::new();
        let mut ports = BTreeMap::new();
        let mut certs = BTreeMap::new();
        for (name, ip) in nodes {
            // The SANs pve-cluster puts on a node certificate, plus the lab's
            // forwarded API address.
            let mut p =
                CertificateParams::new(vec!["localhost".to_string(), name.to_string()]).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, format!("{name}.lab"));
            for addr in [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip.parse().unwrap(),
                IpAddr::V4(LAB_API_IP),
            ] {
                p.subject_alt_names.push(SanType::IpAddress(addr));
            }
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            ports.insert(name.to_string(), l.local_addr().unwrap().port());
            certs.insert(name.to_string(), cert.der().to_vec());
            let chain = vec![cert.der().clone()];
            let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            let cfg = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, key_der)
                .unwrap();
            listeners.push((name.to_string(), l, Arc::new(cfg)));
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let tok = token.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for (node, l, cfg) in listeners {
                    let l = tokio::net::TcpListener::from_std(l).unwrap();
                    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                    let (st, tok) = (st.clone(), tok.clone());
                    tokio::spawn(async move {
                        loop {
                            let Ok((tcp, _)) = l.accept().await else {
                                continue;
                            };
                            let (acceptor, st, tok, node) =
                                (acceptor.clone(), st.clone(), tok.clone(), node.clone());
                            tokio::spawn(async move {
                                if let Ok(tls) = acceptor.accept(tcp).await {
                                    let _ = serve(tls, &node, &st, &tok).await;
                                }
                            });
                        }
                    });
                }
                let _ = stop_rx.await;
            });
        });
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca_file, ca_pem.as_bytes()).unwrap();
        FakePve {
            ca_pem,
            ca_file,
            ports,
            token,
            certs,
            state,
            _stop: stop_tx,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap().clone()
    }

    /// Back to the starting state: the guest running, HA-managed, on the
    /// first node; every node online; no fault, step or edit.
    pub fn reset(&self) {
        self.set(|s| {
            for n in s.nodes.values_mut() {
                n.online = true;
            }
            s.quorate = true;
            s.guest_node = s.nodes.keys().next().cloned();
            s.guest_status = "running".into();
            s.lock = None;
            s.ha_managed = true;
            s.crm_state = "started".into();
            s.fault = Fault::None;
            s.fault_only = None;
            s.after.clear();
            s.edit = None;
            s.each_its_own.clear();
        });
    }

    /// Apply `step` when the `n`-th request from now has been answered.
    pub fn after(&self, n: usize, step: Step) {
        self.set(|s| {
            let at = s.log.len() + n;
            s.after.push((at, step));
        });
    }

    /// A planned migration: the guest now runs on `to`.
    pub fn migrate(&self, to: &str) {
        self.set(|s| {
            s.guest_node = Some(to.to_string());
            s.guest_status = "running".into();
            s.crm_state = "started".into();
            s.lock = None;
        });
    }

    /// `node` dies: it goes offline, the guest on it shows `unknown`, HA fences.
    pub fn crash(&self, node: &str) {
        self.set(|s| {
            if let Some(n) = s.nodes.get_mut(node) {
                n.online = false;
            }
            if s.guest_node.as_deref() == Some(node) {
                s.crm_state = "fence".into();
            }
        });
    }

    /// The node certificate's SHA-256 fingerprint, `AA:BB:...` like Proxmox shows it.
    pub fn fingerprint(&self, node: &str) -> String {
        zfs_nfs_replica::pve::client::fingerprint_of(&self.certs[node])
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    pub fn url(&self, node: &str) -> String {
        format!("https://127.0.0.1:{}", self.ports[node])
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    node: &str,
    state: &Mutex<State>,
    token: &str,
) -> std::io::Result<()> {
    let Some(req) = super::http::read_request(&mut s).await? else {
        return Ok(());
    };
    let header = |k: &str| req.header(k).map(str::to_string);
    let super::http::Request {
        method,
        path: target,
        body,
        ..
    } = &req;
    let fault = {
        let mut st = state.lock().unwrap();
        if method == "GET" {
            st.log.push(format!("{node} {method} {target}"));
        } else {
            st.log.push(format!("{node} {method} {target} {body}"));
        }
        let n = st.log.len() - 1;
        let due: Vec<Step> = st
            .after
            .iter()
            .filter(|(at, _)| *at == n)
            .map(|(_, f)| *f)
            .collect();
        for f in due {
            f(&mut st);
        }
        match st.fault_only {
            Some(p) if !target.contains(p) => Fault::None,
            _ => st.fault.clone(),
        }
    };
    let (status, payload) = match fault {
        Fault::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Fault::Status(code, text) => (code, text),
        Fault::Garbage => (200, "<html>not json".to_string()),
        Fault::Slow(_) | Fault::None => {
            if let Fault::Slow(d) = fault {
                tokio::time::sleep(d).await;
            }
            route(
                node,
                method,
                target,
                body,
                header("authorization"),
                state,
                token,
            )
            .await
        }
    };
    let reason = match status {
        200 => "OK",
        401 => "authentication failure",
        403 => "Permission check failed",
        500 => "Internal Server Error",
        501 => "Method not implemented",
        _ => "Error",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

async fn route(
    node: &str,
    method: &str,
    target: &str,
    body: &str,
    auth: Option<String>,
    state: &Mutex<State>,
    token: &str,
) -> (u16, String) {
    // With the permission model, any token it knows, with the stand-in's
    // secret; without it, the one token.
    let access = state.lock().unwrap().access.clone();
    let secret = token.split_once('=').map_or("", |(_, s)| s);
    let id = match (
        &access,
        auth.as_deref().and_then(|a| a.strip_prefix("PVEAPIToken=")),
    ) {
        (None, Some(t)) if t == token => token.split_once('=').map_or("", |(i, _)| i).to_string(),
        (Some(a), Some(t)) => match t.split_once('=') {
            Some((i, s)) if s == secret && a.tokens.contains_key(i) => i.to_string(),
            _ => return (401, String::new()),
        },
        _ => return (401, String::new()),
    };
    let may = |path: &str, privilege: &str| {
        access
            .as_ref()
            .is_none_or(|a| a.allows(&id, path, privilege))
    };
    let denied = |path: &str, privilege: &str| {
        (
            403,
            json!({"data": null, "message": format!("Permission check failed ({path}, {privilege})")})
                .to_string(),
        )
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(path) = path.strip_prefix("/api2/json") else {
        return (501, json!({"data": null}).to_string());
    };
    let mut st = state.lock().unwrap().clone();
    if st.each_its_own.iter().any(|n| n == node) {
        st.guest_node = Some(node.to_string());
    }
    let online = |n: &str| st.nodes.get(n).is_some_and(|x| x.online);
    let sid = format!("ct:{}", st.vmid);
    let data: Value = match (method, path) {
        ("GET", "/cluster/resources") => {
            let mut rows = vec![
                json!({"id": "qemu/100", "type": "qemu", "vmid": 100, "node": st.nodes.keys().next().unwrap(), "status": "running", "name": "other-vm", "template": 0}),
            ];
            // Guests the token may not audit are silently absent.
            if let Some(gn) = st
                .guest_node
                .as_ref()
                .filter(|_| may(&format!("/vms/{}", st.vmid), "VM.Audit"))
            {
                if online(gn) {
                    let mut r = json!({"id": format!("lxc/{}", st.vmid), "type": "lxc", "vmid": st.vmid, "node": gn, "status": st.guest_status, "name": "nfs", "maxmem": 1073741824, "uptime": 1234, "template": 0});
                    if st.ha_managed {
                        r["hastate"] = json!(st.crm_state);
                    }
                    if let Some(l) = &st.lock {
                        r["lock"] = json!(l);
                    }
                    rows.push(r);
                } else {
                    // A guest on a dead node: only these fields.
                    rows.push(json!({"id": format!("lxc/{}", st.vmid), "vmid": st.vmid, "node": gn, "type": "lxc", "status": "unknown"}));
                }
            }
            if query.contains("type=vm") || query.is_empty() {
                json!(rows)
            } else {
                json!([])
            }
        }
        ("GET", "/cluster/status" | "/cluster/ha/status/current") if !may("/", "Sys.Audit") => {
            return denied("/", "Sys.Audit");
        }
        ("POST" | "PUT", p) if p.starts_with("/cluster/ha/") && !may("/", "Sys.Console") => {
            return denied("/", "Sys.Console");
        }
        ("GET", p)
            if p.starts_with("/nodes/") && !may(&format!("/vms/{}", st.vmid), "VM.Audit") =>
        {
            return denied(&format!("/vms/{}", st.vmid), "VM.Audit");
        }
        ("GET", "/cluster/status") => {
            let mut rows = vec![
                json!({"type": "cluster", "id": "cluster", "name": st.cluster, "nodes": st.nodes.len(), "quorate": i32::from(st.quorate), "version": 5}),
            ];
            for (i, (n, x)) in st.nodes.iter().enumerate() {
                rows.push(json!({"type": "node", "id": format!("node/{n}"), "name": n, "nodeid": i + 1, "ip": x.ip, "online": i32::from(x.online), "local": i32::from(n == node), "level": ""}));
            }
            json!(rows)
        }
        ("GET", "/cluster/ha/status/current") => {
            let master = st
                .nodes
                .iter()
                .find(|(_, x)| x.online)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            let mut rows = vec![
                json!({"id": "quorum", "type": "quorum", "node": node, "status": if st.quorate { "OK" } else { "No quorum on node" }, "quorate": i32::from(st.quorate)}),
                json!({"id": "master", "type": "master", "node": master, "status": format!("{master} (active, Sat Nov 21 10:00:00 2026)"), "timestamp": 1795251600}),
            ];
            for (n, x) in &st.nodes {
                rows.push(json!({"id": format!("lrm:{n}"), "type": "lrm", "node": n, "status": if x.online { format!("{n} (active, Sat Nov 21 10:00:00 2026)") } else { format!("{n} (old timestamp - dead?)") }}));
            }
            if st.ha_managed
                && let Some(gn) = &st.guest_node
            {
                rows.push(json!({"id": format!("service:{sid}"), "type": "service", "sid": sid, "node": gn, "crm_state": st.crm_state, "state": st.crm_state, "request_state": "started", "max_restart": 1, "max_relocate": 1}));
            }
            json!(rows)
        }
        ("POST", p) if p == format!("/cluster/ha/resources/{sid}/migrate") => {
            let Some(to) = body.split('&').find_map(|kv| kv.strip_prefix("node=")) else {
                return (400, json!({"data": null, "errors": {"node": "property is missing and it is not optional"}}).to_string());
            };
            let to = to.to_string();
            drop(st);
            let mut s = state.lock().unwrap();
            s.crm_state = "migrate".into();
            s.guest_node = Some(to);
            json!(format!(
                "UPID:{node}:0000ABCD:00000000:00000000:hamigrate:{sid}:root@pam:"
            ))
        }
        // `ha-manager set SID --state stopped`: HA stops the guest where it is.
        ("PUT", p) if p == format!("/cluster/ha/resources/{sid}") => {
            if !body.split('&').any(|kv| kv == "state=stopped") {
                return (
                    400,
                    json!({"data": null, "errors": {"state": "value must be stopped here"}})
                        .to_string(),
                );
            }
            drop(st);
            let mut s = state.lock().unwrap();
            s.crm_state = "stopped".into();
            s.guest_status = "stopped".into();
            Value::Null
        }
        ("GET", p) if p.starts_with("/nodes/") => {
            let rest: Vec<&str> = p.trim_start_matches("/nodes/").split('/').collect();
            let want = ["lxc", &st.vmid.to_string(), "status", "current"];
            if rest.len() != 5 || rest[1..] != want {
                return (501, json!({"data": null}).to_string());
            }
            let asked = rest[0];
            if asked != node && !online(asked) {
                // The request is forwarded to that node: it hangs.
                std::future::pending::<()>().await;
            }
            if st.guest_node.as_deref() != Some(asked) {
                return (500, json!({"data": null, "message": format!("Configuration file 'nodes/{asked}/lxc/{}.conf' does not exist\n", st.vmid)}).to_string());
            }
            let mut r = json!({"vmid": st.vmid, "status": st.guest_status, "name": "nfs", "uptime": 1234, "ha": {"managed": i32::from(st.ha_managed)}});
            if st.ha_managed {
                r["ha"]["state"] = json!(st.crm_state);
            }
            if let Some(l) = &st.lock {
                r["lock"] = json!(l);
            }
            r
        }
        _ => return (
            501,
            json!({"data": null, "message": format!("Method '{method} {path}' not implemented")})
                .to_string(),
        ),
    };
    let mut data = data;
    if let Some(edit) = state.lock().unwrap().edit {
        edit(path, &mut data);
    }
    (200, json!({"data": data}).to_string())
}
