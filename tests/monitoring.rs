//! The shipped Prometheus alert rules and Grafana dashboard
//! (`examples/monitoring/`): the rules load in Prometheus's own checker and
//! fire as their unit tests say (`promtool test rules`), every dashboard
//! query is valid PromQL, and both use only metric names the tool exports.
//! promtool comes from Debian's `prometheus` package, extracted (not
//! installed) by tests/run.sh into `target/tools/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use zfs_nfs_replica::status::{Status, prometheus};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitoring")
}

/// `$PROMTOOL`, else the one tests/run.sh extracted, else `promtool` on PATH.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return p.into();
    }
    let extracted = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/promtool");
    if extracted.is_file() {
        return extracted;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!("promtool not found: tests/run.sh extracts it into target/tools/ (or set PROMTOOL)")
    })
}

fn promtool_ok(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every metric family the textfile can hold (its TYPE lines are written
/// even when a family has no sample).
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in ["master-refused.json", "standby.json"] {
        let path = format!("{}/tests/fixtures/status/{f}", env!("CARGO_MANIFEST_DIR"));
        let s: Status = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for l in prometheus::render(&s).lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                names.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
    }
    assert!(names.len() > 10, "{names:?}");
    names
}

/// The `zfs_nfs_replica_*` names a query text uses.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("zfs_nfs_replica_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(dir().join("zfs-nfs-replica.grafana.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut exprs);
    exprs
}

#[test]
fn the_alert_rules_load_and_fire_as_their_unit_tests_say() {
    let out = promtool_ok(&["check", "rules", "zfs-nfs-replica.rules.yml"], &dir());
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool_ok(&["test", "rules", "zfs-nfs-replica.rules.test.yml"], &dir());
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_alert_rules_use_only_exported_metrics() {
    let rules = std::fs::read_to_string(dir().join("zfs-nfs-replica.rules.yml")).unwrap();
    let exported = exported();
    let used = used(&rules);
    assert!(used.len() >= 8, "{used:?}");
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
}

#[test]
fn every_dashboard_query_is_valid_promql_on_exported_metrics() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let exported = exported();
    for e in &exprs {
        let unknown: Vec<_> = used(e).difference(&exported).cloned().collect();
        assert!(unknown.is_empty(), "{e}: not exported: {unknown:?}");
        assert!(!used(e).is_empty(), "{e}: uses none of the tool's metrics");
    }
    // Each query as a recording rule, Grafana's variables filled in as
    // Grafana would: promtool parses every one.
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let q = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        assert!(!q.contains('$'), "an unknown variable in {e}");
        rules += &format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        );
    }
    std::fs::write(tmp.path().join("q.yml"), rules).unwrap();
    let out = promtool_ok(&["check", "rules", "q.yml"], tmp.path());
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}"
    );
}

#[test]
fn a_broken_query_is_caught() {
    // The checks above can fail: promtool refuses a query that does not parse.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("q.yml"),
        "groups:\n  - name: x\n    rules:\n      - record: x\n        expr: \"rate(zfs_nfs_replica_pool_sent_bytes_total[5m]\"\n",
    )
    .unwrap();
    let out = Command::new(promtool())
        .args(["check", "rules", "q.yml"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        used("a zfs_nfs_replica_made_up_metric{x=\"y\"}")
            .difference(&exported())
            .any(|n| n == "zfs_nfs_replica_made_up_metric")
    );
}
