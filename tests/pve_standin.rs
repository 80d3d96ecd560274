//! The Proxmox API stand-in answers like the real API (shapes from
//! docs/facts.md) over verified TLS, and scenario steps change its answers.
//! Checked with curl, an independent HTTPS client, against the stand-in's CA.

mod common;

use std::process::Command;

use common::pve::{FakePve, Fault};
use serde_json::Value;

fn get(pve: &FakePve, node: &str, path: &str, token: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
        .arg(pve.ca_file.path())
        .arg("-H")
        .arg(format!("Authorization: PVEAPIToken={token}"))
        .arg(format!("{}/api2/json{path}", pve.url(node)))
        .output()
        .expect("curl (the README test command installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn data(pve: &FakePve, node: &str, path: &str) -> Value {
    let (code, body) = get(pve, node, path, &pve.token);
    assert_eq!(code, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"].clone()
}

fn guest_row(pve: &FakePve, node: &str) -> Value {
    let rows = data(pve, node, "/cluster/resources?type=vm");
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == 103)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn answers_with_proxmox_shapes_and_follows_the_guest() {
    let pve = FakePve::start(
        &[("pve1", "192.168.100.10"), ("pve2", "192.168.100.20")],
        103,
    );
    let row = guest_row(&pve, "pve1");
    assert_eq!(
        (
            row["id"].as_str(),
            row["node"].as_str(),
            row["status"].as_str(),
            row["hastate"].as_str()
        ),
        (
            Some("lxc/103"),
            Some("pve1"),
            Some("running"),
            Some("started")
        )
    );
    let status = data(&pve, "pve2", "/cluster/status");
    assert_eq!(status[0]["type"], "cluster");
    assert_eq!(status[0]["quorate"], 1, "booleans are integers");
    let local: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["local"] == 1)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(local, ["pve2"], "each node's API marks itself local");
    let ha = data(&pve, "pve1", "/cluster/ha/status/current");
    let svc = ha
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sid"] == "ct:103")
        .unwrap();
    assert_eq!(
        (svc["node"].as_str(), svc["crm_state"].as_str()),
        (Some("pve1"), Some("started"))
    );
    let cur = data(&pve, "pve1", "/nodes/pve1/lxc/103/status/current");
    assert_eq!(
        (cur["status"].as_str(), cur["ha"]["managed"].as_i64()),
        (Some("running"), Some(1))
    );
    let (code, body) = get(
        &pve,
        "pve1",
        "/nodes/pve2/lxc/103/status/current",
        &pve.token,
    );
    assert_eq!(code, 500);
    assert!(
        body.contains("Configuration file 'nodes/pve2/lxc/103.conf' does not exist"),
        "{body}"
    );

    // A planned migration.
    pve.migrate("pve2");
    assert_eq!(guest_row(&pve, "pve1")["node"], "pve2");
    // A crash: the guest's row shrinks to id/vmid/node/type/status=unknown, HA fences.
    pve.crash("pve2");
    let row = guest_row(&pve, "pve1");
    assert_eq!(row["status"], "unknown");
    assert!(row.get("hastate").is_none());
    let ha = data(&pve, "pve1", "/cluster/ha/status/current");
    assert_eq!(
        ha.as_array()
            .unwrap()
            .iter()
            .find(|r| r["sid"] == "ct:103")
            .unwrap()["crm_state"],
        "fence"
    );
    // Quorum loss.
    pve.set(|s| s.quorate = false);
    assert_eq!(data(&pve, "pve1", "/cluster/status")[0]["quorate"], 0);
    // A lock (backup running).
    pve.set(|s| {
        s.nodes.get_mut("pve2").unwrap().online = true;
        s.lock = Some("backup".into());
    });
    assert_eq!(guest_row(&pve, "pve1")["lock"], "backup");
}

#[test]
fn refuses_wrong_tokens_and_injects_faults() {
    let pve = FakePve::start(
        &[("pve1", "192.168.100.10"), ("pve2", "192.168.100.20")],
        103,
    );
    assert_eq!(
        get(&pve, "pve1", "/cluster/status", "repl@pve!ro=wrong").0,
        401
    );
    pve.set(|s| s.fault = Fault::Status(500, "{\"data\":null}".into()));
    assert_eq!(get(&pve, "pve1", "/cluster/status", &pve.token).0, 500);
    pve.set(|s| s.fault = Fault::Garbage);
    let (code, body) = get(&pve, "pve1", "/cluster/status", &pve.token);
    assert_eq!(code, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());
    pve.set(|s| s.fault = Fault::Hang);
    let started = std::time::Instant::now();
    assert_eq!(
        get(&pve, "pve1", "/cluster/status", &pve.token).0,
        0,
        "no answer: curl's own 5 s deadline ends it"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    // The certificate is only good for the names Proxmox puts on it.
    pve.set(|s| s.fault = Fault::None);
    let port = pve.ports["pve1"];
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--resolve",
            &format!("not-a-node.example:{port}:127.0.0.1"),
            "--cacert",
        ])
        .arg(pve.ca_file.path())
        .arg(format!(
            "https://not-a-node.example:{port}/api2/json/cluster/status"
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("certificate"),
        "a name not in the SANs must fail verification: {err}"
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--resolve",
            &format!("pve1:{port}:127.0.0.1"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(pve.ca_file.path())
        .arg(format!("https://pve1:{port}/api2/json/cluster/status"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "401",
        "the node name is a SAN (and no token was sent)"
    );
}
