//! Pool health, read on every node every run: `zpool status -p` (state,
//! per-vdev READ/WRITE/CKSUM, the `errors:` line, scrub and resilver),
//! `zpool list -H -p` (free space) and, optionally, the pool's disks under
//! `/dev/disk/by-id`. The verdict is pure ([`assess`]); reading it ([`read`])
//! is one `zpool status` and one `zpool list` for all pools of a side.
//!
//! What the master does with an unhealthy source pool (alert, refuse,
//! failover) is decided in `commands::run`; this module only says what is
//! wrong.

pub mod read;

use serde::{Deserialize, Serialize};

use crate::units::human_bytes;
use crate::zfs::PoolUsage;
use crate::zfs::pool::{Scan, ZpoolStatus};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Ok,
    /// Worth a look, not a reason to act (low space, a resilver running).
    Warn,
    /// The pool cannot be trusted: state, I/O or checksum errors, data
    /// errors, a missing disk, or no answer at all.
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One pool's health, as people and the status file see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolHealth {
    pub pool: String,
    pub level: Level,
    /// `zpool status` state (ONLINE, DEGRADED, ...), empty when unknown.
    pub state: String,
    pub read_errors: u64,
    pub write_errors: u64,
    pub checksum_errors: u64,
    pub data_errors: u64,
    /// Scrub or resilver, in words (`scrub in progress, 12% done`).
    pub scan: String,
    pub size: Option<u64>,
    pub free: Option<u64>,
    /// Every reason for the level, one line each.
    pub problems: Vec<String>,
}

impl PoolHealth {
    /// A pool whose health could not be read at all.
    pub fn unknown(pool: &str, why: String) -> PoolHealth {
        PoolHealth {
            pool: pool.to_string(),
            level: Level::Fail,
            state: String::new(),
            read_errors: 0,
            write_errors: 0,
            checksum_errors: 0,
            data_errors: 0,
            scan: String::new(),
            size: None,
            free: None,
            problems: vec![why],
        }
    }

    /// One line: `zpool1: DEGRADED (...); ...` or `zpool1: ok`.
    pub fn summary(&self) -> String {
        if self.problems.is_empty() {
            let free = match (self.free, self.size) {
                (Some(f), Some(s)) if s > 0 => {
                    format!(
                        ", {} free ({:.0}%)",
                        human_bytes(f),
                        100.0 * f as f64 / s as f64
                    )
                }
                _ => String::new(),
            };
            let scan = if self.scan.is_empty() {
                String::new()
            } else {
                format!(", {}", self.scan)
            };
            format!("{}: {}{free}{scan}", self.pool, self.state)
        } else {
            format!(
                "{}: {} ({})",
                self.pool,
                self.level.as_str().to_uppercase(),
                self.problems.join("; ")
            )
        }
    }
}

fn describe_scan(s: &Scan) -> String {
    let pct = |p: &Option<f64>| p.map(|p| format!(", {p:.0}% done")).unwrap_or_default();
    match s {
        Scan::None => String::new(),
        Scan::ScrubInProgress { done_pct } => format!("scrub in progress{}", pct(done_pct)),
        Scan::ScrubPaused => "scrub paused".into(),
        Scan::ScrubDone { repaired, errors } => {
            format!("last scrub repaired {repaired} with {errors} error(s)")
        }
        Scan::ScrubCanceled => "scrub canceled".into(),
        Scan::ResilverInProgress { done_pct } => format!("resilver in progress{}", pct(done_pct)),
        Scan::ResilverDone => "resilvered".into(),
        Scan::Other(t) => t.clone(),
    }
}

/// The verdict for one pool, from what `zpool status` and `zpool list` said
/// and which of its configured disks are missing. Pure.
pub fn assess(
    pool: &str,
    status: Option<&ZpoolStatus>,
    space: Option<&PoolUsage>,
    missing_disks: &[String],
    min_free: f64,
) -> PoolHealth {
    let Some(st) = status else {
        return PoolHealth::unknown(
            pool,
            "MISSING: not in `zpool status` (not imported?)".into(),
        );
    };
    let mut v = Verdict::default();
    if st.state != "ONLINE" {
        let why = if st.status.is_empty() {
            String::new()
        } else {
            format!(": {}", st.status)
        };
        v.fail(format!("state {}{why}", st.state));
    }
    let bad: Vec<String> = st
        .bad_vdevs()
        .map(|x| {
            let note = if x.note.is_empty() {
                String::new()
            } else {
                format!(" {}", x.note)
            };
            format!("{} {}{note}", x.name, x.state)
        })
        .collect();
    if !bad.is_empty() {
        v.fail(format!("vdev(s) not online: {}", bad.join(", ")));
    }
    let (r, w, c) = st.error_counts();
    if r > 0 || w > 0 || c > 0 {
        let who: Vec<String> = st
            .vdevs
            .iter()
            .skip(1)
            .filter(|x| x.read > 0 || x.write > 0 || x.cksum > 0)
            .map(|x| format!("{} {}/{}/{}", x.name, x.read, x.write, x.cksum))
            .collect();
        v.fail(format!(
            "I/O errors (READ/WRITE/CKSUM): {} (`zpool clear {pool}` once the cause is fixed)",
            who.join(", ")
        ));
    }
    if st.data_errors > 0 {
        v.fail(format!(
            "{} permanent data error(s) (`zpool status -v {pool}` lists the files)",
            st.data_errors
        ));
    }
    for d in missing_disks {
        v.fail(format!("disk /dev/disk/by-id/{d} is missing"));
    }
    match &st.scan {
        Scan::ResilverInProgress { .. } => v.warn(describe_scan(&st.scan)),
        Scan::ScrubDone { repaired, errors } if *errors > 0 || !is_zero_bytes(repaired) => {
            v.warn(describe_scan(&st.scan))
        }
        _ => {}
    }
    if let Some(sp) = space
        && sp.size > 0
        && (sp.free as f64) < min_free * sp.size as f64
    {
        v.warn(format!(
            "only {} free ({:.1}% of {}), below min_free {:.0}%",
            human_bytes(sp.free),
            100.0 * sp.free as f64 / sp.size as f64,
            human_bytes(sp.size),
            min_free * 100.0
        ));
    }
    let Verdict { level, problems } = v;
    PoolHealth {
        pool: pool.to_string(),
        level,
        state: st.state.clone(),
        read_errors: r,
        write_errors: w,
        checksum_errors: c,
        data_errors: st.data_errors,
        scan: describe_scan(&st.scan),
        size: space.map(|s| s.size),
        free: space.map(|s| s.free),
        problems,
    }
}

#[derive(Default)]
struct Verdict {
    level: Level,
    problems: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, p: String) {
        self.level = Level::Fail;
        self.problems.push(p);
    }

    fn warn(&mut self, p: String) {
        self.level = self.level.max(Level::Warn);
        self.problems.push(p);
    }
}

/// "0B", "0" or "0.00B": nothing was repaired.
fn is_zero_bytes(s: &str) -> bool {
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    !digits.is_empty() && digits.chars().all(|c| c == '0')
}

#[cfg(test)]
mod tests {
    use super::read::missing_disks;
    use super::*;

    fn status(state: &str, rows: &[(&str, &str, u64, u64, u64)], errors: u64) -> ZpoolStatus {
        ZpoolStatus {
            name: "zpool1".into(),
            state: state.into(),
            status: String::new(),
            scan: Scan::None,
            vdevs: rows
                .iter()
                .enumerate()
                .map(|(i, (n, s, r, w, c))| crate::zfs::pool::Vdev {
                    name: n.to_string(),
                    depth: i.min(1),
                    state: s.to_string(),
                    read: *r,
                    write: *w,
                    cksum: *c,
                    note: String::new(),
                })
                .collect(),
            data_errors: errors,
            errors_line: String::new(),
        }
    }

    fn space(size: u64, free: u64) -> PoolUsage {
        PoolUsage {
            name: "zpool1".into(),
            health: "ONLINE".into(),
            size,
            allocated: size - free,
            free,
        }
    }

    #[test]
    fn levels() {
        let ok = status(
            "ONLINE",
            &[("zpool1", "ONLINE", 0, 0, 0), ("sda", "ONLINE", 0, 0, 0)],
            0,
        );
        let h = assess("zpool1", Some(&ok), Some(&space(100, 50)), &[], 0.05);
        assert_eq!(h.level, Level::Ok, "{h:?}");
        assert!(h.problems.is_empty());

        let h = assess("zpool1", Some(&ok), Some(&space(100, 4)), &[], 0.05);
        assert_eq!(h.level, Level::Warn);
        assert!(h.problems[0].contains("below min_free 5%"), "{h:?}");

        let ck = status(
            "ONLINE",
            &[("zpool1", "ONLINE", 0, 0, 0), ("sda", "ONLINE", 0, 0, 7)],
            0,
        );
        let h = assess("zpool1", Some(&ck), None, &[], 0.05);
        assert_eq!(
            h.level,
            Level::Fail,
            "ONLINE with checksum errors is not healthy"
        );
        assert_eq!(h.checksum_errors, 7);
        assert!(h.problems[0].contains("sda 0/0/7"), "{h:?}");

        let de = status(
            "ONLINE",
            &[("zpool1", "ONLINE", 0, 0, 0), ("sda", "ONLINE", 0, 0, 0)],
            3,
        );
        let h = assess("zpool1", Some(&de), None, &[], 0.05);
        assert_eq!(h.level, Level::Fail);
        assert!(h.problems[0].contains("3 permanent data error(s)"));

        let h = assess("zpool1", Some(&ok), None, &["usb-X".into()], 0.05);
        assert_eq!(h.level, Level::Fail);
        assert!(h.problems[0].contains("/dev/disk/by-id/usb-X is missing"));

        let h = assess("zpool1", None, None, &[], 0.05);
        assert_eq!(h.level, Level::Fail);
        assert!(
            h.summary()
                .starts_with("zpool1: FAIL (MISSING: not in `zpool status`"),
            "{}",
            h.summary()
        );
    }

    #[test]
    fn missing_disks_are_looked_up_by_id() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("usb-A"), "").unwrap();
        assert_eq!(
            missing_disks(d.path(), &["usb-A".into(), "usb-B".into()]),
            vec!["usb-B".to_string()]
        );
    }
}

#[cfg(test)]
mod fixtures {
    use super::*;
    use crate::zfs::parse_pool_list;
    use crate::zfs::pool::parse_zpool_status;

    /// The verdict on each captured real `zpool status -p` / `zpool list -H -p`.
    fn verdict(name: &str) -> PoolHealth {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zpool-status/");
        let st = std::fs::read_to_string(format!("{dir}{name}.txt")).unwrap();
        let li = std::fs::read_to_string(format!("{dir}{name}.list")).unwrap();
        let st = parse_zpool_status(&st).unwrap();
        let li = parse_pool_list(&li).unwrap();
        assess(&st[0].name, st.first(), li.last(), &[], 0.05)
    }

    #[test]
    fn each_captured_state() {
        let cases = [
            ("healthy", Level::Ok, ""),
            ("degraded-removed", Level::Fail, "state DEGRADED"),
            (
                "checksum-repaired",
                Level::Fail,
                "I/O errors (READ/WRITE/CKSUM): /cap/c2.img 0/0/",
            ),
            ("data-errors", Level::Fail, "1 permanent data error(s)"),
            ("scrub-in-progress", Level::Ok, ""),
            ("scrub-paused", Level::Ok, ""),
            ("resilvering", Level::Warn, "resilver in progress"),
            ("suspended", Level::Fail, "state SUSPENDED"),
        ];
        for (name, level, first) in cases {
            let h = verdict(name);
            assert_eq!(h.level, level, "{name}: {h:?}");
            if first.is_empty() {
                assert!(h.problems.is_empty(), "{name}: {h:?}");
            } else {
                assert!(
                    h.problems.iter().any(|p| p.starts_with(first)),
                    "{name}: {:?}",
                    h.problems
                );
            }
        }
        assert!(
            verdict("scrub-in-progress")
                .summary()
                .contains("scrub in progress")
        );
        assert!(
            verdict("healthy")
                .summary()
                .starts_with("cap_ok: ONLINE, 231.8 MiB free (97%)"),
            "{}",
            verdict("healthy").summary()
        );
    }
}
