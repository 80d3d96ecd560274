//! The node_exporter textfile, read by the official Prometheus client's
//! parser (python3-prometheus-client, installed by tests/run.sh), and held
//! to the exposition conventions dashboards rely on.

use std::io::Write;
use std::process::{Command, Stdio};

use zfs_nfs_replica::status::{Status, prometheus};

const PYTHON: &str = "/usr/bin/python3";

/// Every family as the parser read it: name, type, and each sample's name,
/// labels and value (JSON lines).
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print(json.dumps({"name": f.name, "type": f.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}))
"#;

fn parse(text: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new(PYTHON)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{PYTHON}: {e} (tests/run.sh installs python3-prometheus-client)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fixture(name: &str) -> Status {
    let path = format!(
        "{}/tests/fixtures/status/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_textfile_parses_and_follows_the_conventions() {
    for name in ["master-refused.json", "standby.json"] {
        let s = fixture(name);
        let text = prometheus::render(&s);
        let families = parse(&text);
        assert!(families.len() >= 10, "{name}: {families:?}");
        let mut seen = std::collections::BTreeSet::new();
        for f in &families {
            let fname = f["name"].as_str().unwrap();
            let kind = f["type"].as_str().unwrap();
            assert!(seen.insert(fname.to_string()), "{name}: {fname} twice");
            assert!(fname.starts_with("zfs_nfs_replica_"), "{name}: {fname}");
            assert!(
                kind == "gauge" || kind == "counter",
                "{name}: {fname} has type {kind}"
            );
            for smp in f["samples"].as_array().unwrap() {
                let sname = smp["name"].as_str().unwrap();
                if kind == "counter" {
                    assert!(sname.ends_with("_total"), "{name}: counter {sname}");
                } else {
                    assert!(!sname.ends_with("_total"), "{name}: gauge {sname}");
                }
                for (k, v) in smp["labels"].as_object().unwrap() {
                    assert!(!v.as_str().unwrap().is_empty(), "{name}: {sname} {k}=\"\"");
                }
            }
        }
        let has = |n: &str| families.iter().any(|f| f["name"] == n);
        assert!(has("zfs_nfs_replica_build_info"), "{name}");
        assert!(has("zfs_nfs_replica_status"), "{name}");
        // The byte counter (the parser names the family without `_total`).
        let sent = families
            .iter()
            .find(|f| f["name"] == "zfs_nfs_replica_pool_sent_bytes")
            .unwrap_or_else(|| panic!("{name}: no byte counter"));
        assert_eq!(sent["type"], "counter");
        for (smp, p) in sent["samples"].as_array().unwrap().iter().zip(&s.pools) {
            assert_eq!(smp["value"].as_f64(), Some(p.bytes_sent_total as f64));
        }
    }
}
