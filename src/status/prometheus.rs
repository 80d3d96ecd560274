//! The node_exporter textfile (`[status] prometheus_textfile`): written by
//! every run, replaced atomically (a temp name node_exporter ignores, then
//! rename), no sample timestamps (node_exporter refuses them). Timestamps
//! are exported as values, so dashboards compute ages with `time() - x`.

use std::fmt::Write as _;
use std::path::Path;

use super::Status;
use crate::health::Level;
use crate::units::parse_time;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, help: &str) {
        self.typed(name, help, "gauge");
    }

    fn typed(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP zfs_nfs_replica_{name} {help}");
        let _ = writeln!(self.0, "# TYPE zfs_nfs_replica_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, x)| format!("{k}=\"{}\"", escape(x)))
            .collect();
        let labels = if l.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", l.join(","))
        };
        let _ = writeln!(self.0, "zfs_nfs_replica_{name}{labels} {v}");
    }
}

fn ts(t: &str) -> Option<f64> {
    parse_time(t).map(|t| t.timestamp() as f64)
}

fn level(l: Level) -> f64 {
    match l {
        Level::Ok => 0.0,
        Level::Warn => 1.0,
        Level::Fail => 2.0,
    }
}

/// The metrics for one status, as text.
pub fn render(s: &Status) -> String {
    let mut o = Out(String::new());
    let node = s.node.as_str();
    o.head(
        "build_info",
        "Always 1; the version of zfs-nfs-replica that wrote this file.",
    );
    o.sample("build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    o.head(
        "status",
        "The overall verdict of the last run: 0 ok, 1 warning, 2 critical (as status --check).",
    );
    if let Some(l) = s.status {
        o.sample("status", &[("node", node)], level(l));
    }
    o.head(
        "role",
        "1 for this node's role in the last run (master, standby or unsure).",
    );
    for r in crate::report::RoleName::ALL {
        o.sample(
            "role",
            &[("node", node), ("role", r.as_str())],
            f64::from(u8::from(s.role.role == *r)),
        );
    }
    o.head("last_run_timestamp_seconds", "When the last run finished.");
    if let Some(t) = ts(&s.last_run.finished) {
        o.sample("last_run_timestamp_seconds", &[("node", node)], t);
    }
    o.head(
        "last_run_exit_code",
        "Exit code of the last run (README: exit codes).",
    );
    o.sample(
        "last_run_exit_code",
        &[("node", node)],
        f64::from(s.last_run.exit_code),
    );
    o.head("last_run_duration_seconds", "How long the last run took.");
    o.sample(
        "last_run_duration_seconds",
        &[("node", node)],
        s.last_run.duration_seconds,
    );
    o.head("last_run_success", "1 when the last run ended 0 or 1.");
    o.sample(
        "last_run_success",
        &[("node", node)],
        f64::from(u8::from(s.last_run.exit_code <= 1)),
    );
    o.head("consecutive_failures", "Failed runs in a row.");
    o.sample(
        "consecutive_failures",
        &[("node", node)],
        f64::from(s.last_run.consecutive_failures),
    );
    o.head(
        "last_success_timestamp_seconds",
        "The last run that ended 0 or 1.",
    );
    if let Some(t) = s.last_run.last_success.as_deref().and_then(ts) {
        o.sample("last_success_timestamp_seconds", &[("node", node)], t);
    }
    o.head(
        "pool_last_success_timestamp_seconds",
        "The last run that replicated the pool to the peer, or found it in sync.",
    );
    for p in &s.pools {
        if let Some(t) = p.last_success.as_deref().and_then(ts) {
            o.sample(
                "pool_last_success_timestamp_seconds",
                &[("pool", &p.pool), ("peer", &p.peer)],
                t,
            );
        }
    }
    o.typed(
        "pool_sent_bytes_total",
        "Bytes this node has sent for the pool to the peer, over all runs.",
        "counter",
    );
    for p in &s.pools {
        o.sample(
            "pool_sent_bytes_total",
            &[("pool", &p.pool), ("peer", &p.peer)],
            p.bytes_sent_total as f64,
        );
    }
    o.head(
        "pool_conflicts",
        "Datasets of the pool refused for a conflict or divergence.",
    );
    for p in &s.pools {
        o.sample(
            "pool_conflicts",
            &[("pool", &p.pool), ("peer", &p.peer)],
            f64::from(p.conflicts),
        );
    }
    o.head(
        "pool_quarantined_datasets",
        "Datasets set aside by `resolve` on the peer (kept).",
    );
    for p in &s.pools {
        o.sample(
            "pool_quarantined_datasets",
            &[("pool", &p.pool), ("peer", &p.peer)],
            p.quarantine.len() as f64,
        );
    }
    o.head(
        "dataset_replicated_timestamp_seconds",
        "Creation time of the newest snapshot both sides hold.",
    );
    for p in &s.pools {
        for d in &p.datasets {
            if let Some(t) = d.replicated.as_ref().and_then(|x| ts(&x.created)) {
                o.sample(
                    "dataset_replicated_timestamp_seconds",
                    &[("dataset", &d.dataset), ("peer", &p.peer)],
                    t,
                );
            }
        }
    }
    o.head(
        "dataset_lag_seconds",
        "Age of the newest snapshot both sides hold, when the run ended (the RPO).",
    );
    for p in &s.pools {
        for d in &p.datasets {
            if let Some(l) = d.lag_seconds {
                o.sample(
                    "dataset_lag_seconds",
                    &[("dataset", &d.dataset), ("peer", &p.peer)],
                    l as f64,
                );
            }
        }
    }
    o.head(
        "received_timestamp_seconds",
        "On a standby: creation time of the newest snapshot received, per pool.",
    );
    for r in &s.received {
        if let Some(t) = r.snapshot.as_ref().and_then(|x| ts(&x.created)) {
            o.sample("received_timestamp_seconds", &[("pool", &r.pool)], t);
        }
    }
    o.head("pool_health", "0 ok, 1 warn, 2 fail (README: Pool health).");
    for h in &s.health {
        // A pool whose state could not be read is `unknown`, never "".
        let state = if h.state.is_empty() {
            "unknown"
        } else {
            &h.state
        };
        o.sample(
            "pool_health",
            &[("pool", &h.pool), ("state", state)],
            level(h.level),
        );
    }
    o.head(
        "pool_errors",
        "Error counters from zpool status, summed over the vdevs.",
    );
    // Only what was read: an unknown pool has no error counts (not 0).
    for h in s.health.iter().filter(|h| !h.state.is_empty()) {
        for (kind, v) in [
            ("read", h.read_errors),
            ("write", h.write_errors),
            ("checksum", h.checksum_errors),
            ("data", h.data_errors),
        ] {
            o.sample(
                "pool_errors",
                &[("pool", &h.pool), ("kind", kind)],
                v as f64,
            );
        }
    }
    o.head("pool_free_bytes", "Free space of the pool (zpool list).");
    for h in &s.health {
        if let Some(f) = h.free {
            o.sample("pool_free_bytes", &[("pool", &h.pool)], f as f64);
        }
    }
    o.0
}

/// Write the textfile atomically. The temp name does not end in `.prom`, so
/// node_exporter never reads half a file.
pub fn write(path: &Path, s: &Status) -> Result<(), String> {
    crate::files::replace_atomically(path, render(s).as_bytes(), 0o644, None)
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
