//! The master checks against a real HTTPS server (the Proxmox API stand-in,
//! its own CA, one listener per node): the real client, TLS verification,
//! token handling, timeouts and the rules, for every scenario the issue
//! lists. The binary-level behaviour (exit codes, sanoid.conf, the hook) is
//! checked by running the built binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pve::{FakePve, Fault, State};
use zfs_nfs_replica::config::{self, Config};
use zfs_nfs_replica::pve::Role;
use zfs_nfs_replica::pve::{self, Purpose};

const NODES: [(&str, &str); 2] = [("pve1", "192.168.100.10"), ("pve2", "192.168.100.20")];

const SANOID: &str = "[zpool1]\n\tuse_template = production\n\tautosnap = yes\n\n[template_production]\n\thourly = 36\n\tautoprune = yes\n";

struct Setup {
    pve: FakePve,
    dir: tempfile::TempDir,
    /// Extra `[proxmox]` lines (e.g. a fingerprint instead of the CA).
    proxmox: String,
    timeout: &'static str,
    url: Option<String>,
}

impl Setup {
    fn new() -> Setup {
        let pve = FakePve::start(&NODES, 103);
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("pve-token");
        std::fs::write(&tok, format!("{}\n", pve.token)).unwrap();
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("sanoid.conf"), SANOID).unwrap();
        let s = Setup {
            pve,
            dir,
            proxmox: String::new(),
            timeout: "2s",
            url: None,
        };
        s.vmlist(Some("pve1"));
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The local `.vmlist` file: the guest on `node`, or the file absent.
    fn vmlist(&self, node: Option<&str>) {
        let p = self.path("vmlist");
        match node {
            Some(n) => std::fs::write(
                &p,
                format!(r#"{{"version":42,"ids":{{"103":{{"node":"{n}","type":"lxc","version":7}},"100":{{"node":"pve1","type":"qemu","version":3}}}}}}"#),
            )
            .unwrap(),
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    fn config_text(&self, node: &str) -> String {
        let ca = if self.proxmox.contains("fingerprint") {
            String::new()
        } else {
            format!("ca_file = \"{}\"\n", self.pve.ca_file.path().display())
        };
        format!(
            "[cluster]\nguest = 103\nnodes = {{ pve1 = \"192.168.100.10\", pve2 = \"192.168.100.20\" }}\n\
             [proxmox]\nurl = \"{url}\"\ntoken_file = \"{tok}\"\n{ca}timeout = \"{t}\"\nvmlist = \"{vl}\"\n{extra}\n\
             [checks]\ncount = 3\ninterval = \"50ms\"\n\
             [sanoid]\nconfig = \"{san}\"\n\
             [hook]\ntimeout = \"3s\"\n\
             [paths]\nrun_dir = \"{run}\"\nstate_dir = \"{state}\"\n\
             [[pool]]\nname = \"zpool1\"\n",
            url = self.url.clone().unwrap_or_else(|| self.pve.url(node)),
            tok = self.path("pve-token").display(),
            t = self.timeout,
            vl = self.path("vmlist").display(),
            extra = self.proxmox,
            san = self.path("sanoid.conf").display(),
            run = self.path("run").display(),
            state = self.path("state").display(),
        )
    }

    fn config(&self, node: &str) -> Config {
        config::parse_str(&self.config_text(node), "test.toml").unwrap()
    }

    fn decide(&self, node: &str) -> Role {
        let cfg = self.config(node);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(pve::decide(&cfg, Purpose::Run))
            .role
    }

    fn unsure(&self, node: &str) -> String {
        match self.decide(node) {
            Role::Unsure { reason } => reason,
            other => panic!("expected nobody sure, got {other:?}"),
        }
    }

    /// Run the binary with this setup's config for `node`.
    fn bin(&self, node: &str, args: &[&str]) -> (Option<i32>, String, String, Duration) {
        let cfg = self.path(&format!("{node}.toml"));
        std::fs::write(&cfg, self.config_text(node)).unwrap();
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    }

    fn sanoid(&self) -> String {
        std::fs::read_to_string(self.path("sanoid.conf")).unwrap()
    }

    fn secret(&self) -> String {
        self.pve.token.split_once('=').unwrap().1.to_string()
    }
}

#[test]
fn master_on_the_guests_node_standby_on_the_other() {
    let s = Setup::new();
    assert_eq!(s.decide("pve1"), Role::Master);
    // 3 checks x (status, resources, HA, the guest's status on this node).
    let log = s.pve.state().log;
    assert_eq!(log.len(), 12, "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.ends_with("/nodes/pve1/lxc/103/status/current"))
            .count(),
        3
    );
    assert_eq!(
        s.decide("pve2"),
        Role::Standby {
            master: "pve1".into()
        }
    );
    // The standby never asks another node for the guest's status (it would
    // be forwarded there, and hang if that node is dead).
    let log = s.pve.state().log;
    assert!(!log[12..].iter().any(|l| l.contains("/nodes/")), "{log:#?}");
    s.pve.migrate("pve2");
    s.vmlist(Some("pve2"));
    assert_eq!(s.decide("pve2"), Role::Master);
    assert_eq!(
        s.decide("pve1"),
        Role::Standby {
            master: "pve2".into()
        }
    );
}

/// Every doubt the issue lists ends in "nobody is master", on both nodes,
/// with the reason.
#[test]
fn every_failure_mode_means_nobody_is_master() {
    type Change = fn(&mut State);
    let cases: Vec<(&str, Change, &str)> = vec![
        ("quorum lost", |s| s.quorate = false, "not quorate"),
        (
            "guest absent (no VM.Audit)",
            |s| s.guest_node = None,
            "VM.Audit",
        ),
        (
            "guest stopped",
            |s| s.guest_status = "stopped".into(),
            "`stopped`",
        ),
        (
            "backup lock",
            |s| s.lock = Some("backup".into()),
            "locked (`backup`)",
        ),
        (
            "migrate lock",
            |s| s.lock = Some("migrate".into()),
            "locked (`migrate`)",
        ),
        ("HA fence", |s| s.crm_state = "fence".into(), "`fence`"),
        (
            "HA recovery",
            |s| s.crm_state = "recovery".into(),
            "`recovery`",
        ),
        (
            "HA migrate",
            |s| s.crm_state = "migrate".into(),
            "`migrate`",
        ),
        (
            "HA relocate",
            |s| s.crm_state = "relocate".into(),
            "`relocate`",
        ),
        ("HA freeze", |s| s.crm_state = "freeze".into(), "`freeze`"),
        ("HA error", |s| s.crm_state = "error".into(), "`error`"),
        (
            "HA unknown state",
            |s| s.crm_state = "request_stop".into(),
            "not `started`",
        ),
        (
            "node 1 crashed",
            |s| {
                s.nodes.get_mut("pve1").unwrap().online = false;
                s.crm_state = "fence".into();
            },
            "pve1",
        ),
        (
            "401",
            |s| s.fault = Fault::Status(401, String::new()),
            "HTTP 401",
        ),
        (
            "403",
            |s| s.fault = Fault::Status(403, String::new()),
            "HTTP 403",
        ),
        (
            "500",
            |s| s.fault = Fault::Status(500, "{\"data\":null}".into()),
            "HTTP 500",
        ),
        (
            "503 on HA only",
            |s| {
                s.fault = Fault::Status(503, String::new());
                s.fault_only = Some("/ha/");
            },
            "/cluster/ha/status/current: HTTP 503",
        ),
        ("garbage", |s| s.fault = Fault::Garbage, "not JSON"),
        (
            "quorate missing",
            |s| {
                s.edit = Some(|path, v| {
                    if path == "/cluster/status" {
                        v[0].as_object_mut().unwrap().remove("quorate");
                    }
                })
            },
            "does not say whether",
        ),
        (
            "quorate as a string",
            |s| {
                s.edit = Some(|path, v| {
                    if path == "/cluster/status" {
                        v[0]["quorate"] = "yes".into();
                    }
                })
            },
            "not a boolean",
        ),
        (
            "data not a list",
            |s| {
                s.edit = Some(|path, v| {
                    if path == "/cluster/resources" {
                        *v = serde_json::json!({"oops": 1});
                    }
                })
            },
            "not a list",
        ),
    ];
    for (name, change, want) in cases {
        for node in ["pve1", "pve2"] {
            let s = Setup::new();
            s.pve.set(change);
            let reason = s.unsure(node);
            assert!(
                reason.contains(want),
                "{name}, seen from {node}: reason `{reason}` lacks `{want}`"
            );
            assert!(reason.starts_with("check 1 of 3: "), "{name}: {reason}");
            assert!(!reason.contains(&s.secret()), "{name}: token leaked");
        }
    }
}

#[test]
fn a_hanging_or_slow_api_is_bounded_by_the_timeout() {
    for fault in [Fault::Hang, Fault::Slow(Duration::from_secs(5))] {
        let mut s = Setup::new();
        s.timeout = "1s";
        s.pve.set(|st| st.fault = fault.clone());
        let started = Instant::now();
        let reason = s.unsure("pve1");
        let took = started.elapsed();
        assert!(
            reason.contains("no answer within 1s"),
            "{fault:?}: {reason}"
        );
        // One check: the three requests run concurrently, each bounded by 1s.
        assert!(took < Duration::from_secs(4), "{fault:?}: took {took:?}");
    }
    // A dead node: asking it for the guest's status hangs (the request is
    // forwarded); only this node is ever asked, and within the timeout.
    let mut s = Setup::new();
    s.timeout = "1s";
    s.pve.set(|st| st.fault = Fault::Hang);
    s.pve
        .set(|st| st.fault_only = Some("/lxc/103/status/current"));
    let reason = s.unsure("pve1");
    assert!(
        reason.contains("/nodes/pve1/lxc/103/status/current: no answer within 1s"),
        "{reason}"
    );
}

#[test]
fn an_unreachable_api_is_doubt() {
    let mut s = Setup::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.url = Some(format!(
        "https://127.0.0.1:{}",
        closed.local_addr().unwrap().port()
    ));
    drop(closed);
    let reason = s.unsure("pve1");
    assert!(reason.contains("cannot reach the API"), "{reason}");
}

#[test]
fn tls_is_always_verified() {
    // Another cluster's CA: refused.
    let other = FakePve::start(&NODES, 103);
    let mut s = Setup::new();
    s.proxmox = String::new();
    let text = s.config_text("pve1").replace(
        &s.pve.ca_file.path().display().to_string(),
        &other.ca_file.path().display().to_string(),
    );
    let cfg = config::parse_str(&text, "t").unwrap();
    let d = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pve::decide(&cfg, Purpose::Run));
    match d.role {
        Role::Unsure { reason } => assert!(
            reason.contains("cannot reach the API") && reason.contains("certificate"),
            "{reason}"
        ),
        r => panic!("accepted a certificate from another CA: {r:?}"),
    }
    // A missing CA file: a clear setup error, nothing sent.
    let text = s.config_text("pve1").replace(
        &s.pve.ca_file.path().display().to_string(),
        "/nonexistent/ca.pem",
    );
    let cfg = config::parse_str(&text, "t").unwrap();
    let before = s.pve.state().log.len();
    let d = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pve::decide(&cfg, Purpose::Run));
    assert!(
        matches!(&d.role, Role::Unsure { reason } if reason.contains("ca_file /nonexistent/ca.pem")),
        "{d:?}"
    );
    assert_eq!(s.pve.state().log.len(), before);
    // The fingerprint pin: the right one is accepted, a wrong one refused.
    s.proxmox = format!("fingerprint = \"{}\"", s.pve.fingerprint("pve1"));
    assert_eq!(s.decide("pve1"), Role::Master);
    s.proxmox = format!("fingerprint = \"{}\"", s.pve.fingerprint("pve2"));
    let reason = s.unsure("pve1");
    assert!(reason.contains("not the pinned"), "{reason}");
}

#[test]
fn token_file_readable_by_others_is_refused_before_sending() {
    let s = Setup::new();
    std::fs::set_permissions(s.path("pve-token"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let reason = s.unsure("pve1");
    assert!(reason.contains("mode 0640"), "{reason}");
    assert!(s.pve.state().log.is_empty());
}

#[test]
fn the_local_vmlist_must_agree() {
    let s = Setup::new();
    s.vmlist(Some("pve2"));
    assert!(
        s.unsure("pve1")
            .contains(".vmlist places guest 103 on `pve2`")
    );
    std::fs::write(s.path("vmlist"), "{\"version\":").unwrap();
    assert!(s.unsure("pve1").contains("not JSON"));
    // No .vmlist at all (not mounted here): no cross-check.
    s.vmlist(None);
    assert_eq!(s.decide("pve1"), Role::Master);
}

#[test]
fn a_migration_between_checks_is_doubt() {
    let s = Setup::new();
    s.vmlist(None);
    // Seen from pve2: 3 requests per check; the guest moves to pve2 after
    // the first check.
    s.pve.set(|st| {
        st.after.push((3, |st| {
            st.guest_node = Some("pve2".into());
        }))
    });
    let reason = s.unsure("pve2");
    assert!(
        reason.contains("changed between checks") && reason.contains("check 2 on `pve2`"),
        "{reason}"
    );
    // Moving back and forth between checks 2 and 3 is also caught.
    let s = Setup::new();
    s.vmlist(None);
    s.pve.set(|st| {
        st.after.push((8, |st| st.guest_node = Some("pve2".into())));
    });
    let reason = s.unsure("pve1");
    assert!(reason.contains("changed between checks"), "{reason}");
}

#[test]
fn json_booleans_and_extra_fields_are_accepted() {
    let s = Setup::new();
    s.pve.set(|st| {
        st.edit = Some(|_, v| {
            if let Some(rows) = v.as_array_mut() {
                for r in rows {
                    for k in ["quorate", "online", "local"] {
                        if let Some(n) = r.get(k).and_then(|x| x.as_i64()) {
                            r[k] = (n == 1).into();
                        }
                    }
                    r["new_field_in_pve9"] = "x".into();
                }
            }
        })
    });
    assert_eq!(s.decide("pve1"), Role::Master);
}

// ---- the binary ----

#[test]
fn nobody_sure_exits_refused_touches_nothing_and_never_shows_the_token() {
    let s = Setup::new();
    s.pve.set(|st| st.crm_state = "fence".into());
    let state = || -> Vec<(String, String)> {
        std::fs::read_dir(s.path("state"))
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), text)
                })
                .collect()
            })
            .unwrap_or_default()
    };
    for args in [
        &["run", "--dry-run"][..],
        &["run"],
        &["run", "--dry-run"],
        &["-vv", "run"],
    ] {
        let before = state();
        let (code, out, err, _) = s.bin("pve1", args);
        assert_eq!(code, Some(4), "{args:?}: {out}{err}");
        assert!(err.contains("`fence`"), "{args:?}: {err}");
        assert!(
            !out.contains(&s.secret()) && !err.contains(&s.secret()),
            "{args:?}: the token leaked"
        );
        assert_eq!(s.sanoid(), SANOID, "{args:?}");
        assert!(!s.path("sanoid.conf.bak").exists());
        assert!(!s.path("run").exists());
        // The only file a run writes is its own record, for `status`; a
        // dry run writes nothing at all.
        let after = state();
        if args.contains(&"--dry-run") {
            assert_eq!(after, before, "a dry run records nothing");
        } else {
            let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["status.json"], "{args:?}");
            assert!(!after[0].1.contains(&s.secret()));
        }
    }
    // Two unsure runs in a row: a warning (critical from [status] max_failures on).
    let (code, out, _, _) = s.bin("pve1", &["status", "--check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("ZFS-NFS-REPLICA WARNING - nobody was surely master in the last run: "),
        "{out}"
    );
    let (_, out, _, _) = s.bin("pve1", &["run", "--dry-run"]);
    assert!(out.contains("nobody is surely master"), "{out}");
}

#[test]
fn standby_turns_autosnap_off_and_sends_nothing() {
    let s = Setup::new();
    // (This host has no `zpool`: the standby's pools cannot be read, which
    // its exit code says: 3, not "nothing to do".)
    let unreadable = Some(3);
    // Dry-run shows the rewrite and changes nothing.
    let (code, out, err, _) = s.bin("pve2", &["run", "--dry-run"]);
    assert_eq!(code, unreadable, "{out}{err}");
    assert!(
        err.contains("the state of its pools could not be read"),
        "{err}"
    );
    assert!(out.contains("is a standby; pve1 is master"), "{out}");
    assert!(out.contains("would set autosnap = no in [zpool1]"), "{out}");
    assert_eq!(s.sanoid(), SANOID);
    let (code, out, err, _) = s.bin("pve2", &["run"]);
    assert_eq!(code, unreadable, "{out}{err}");
    assert_eq!(
        s.sanoid(),
        SANOID.replace("\tautosnap = yes\n\n", "\tautosnap = no\n\n")
    );
    assert_eq!(
        std::fs::read_to_string(s.path("sanoid.conf.bak")).unwrap(),
        SANOID
    );
    // Nothing was sent: the standby never opened an ssh connection.
    assert!(!err.contains("ssh"), "{err}");
    // A second run changes nothing (and keeps the first backup).
    std::fs::remove_file(s.path("sanoid.conf.bak")).unwrap();
    let (code, _, _, _) = s.bin("pve2", &["run"]);
    assert_eq!(code, unreadable);
    assert!(!s.path("sanoid.conf.bak").exists());
}

#[test]
fn an_unparsable_sanoid_conf_refuses_with_its_line() {
    let s = Setup::new();
    let bad = "[zpool1]\n\tautosnap = yes\nthis is not ini\n";
    std::fs::write(s.path("sanoid.conf"), bad).unwrap();
    let (code, out, err, _) = s.bin("pve2", &["run"]);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(err.contains("sanoid.conf:3:"), "{err}");
    assert_eq!(s.sanoid(), bad);
}

#[test]
fn the_hook_never_blocks_or_fails_the_start() {
    let s = Setup::new();
    // A hanging API: the hook gives up at [hook] timeout (3s) and exits 0.
    s.pve.set(|st| st.fault = Fault::Hang);
    let (code, out, err, took) = s.bin("pve1", &["hook", "103", "pre-start"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(
        err.contains("not promoted") || err.contains("gave up"),
        "{err}"
    );
    assert_eq!(s.sanoid(), SANOID);
    let rec = std::fs::read_to_string(s.path("state/last-promotion.json")).unwrap();
    assert!(rec.contains("\"promoted\": false"), "{rec}");
    // Another guest's hook, other phases, a broken config: 0, nothing done.
    for args in [
        &["hook", "104", "pre-start"][..],
        &["hook", "103", "post-stop"],
        &["hook", "103", "pre-stop"],
        &["hook", "103", "no-such-phase"],
    ] {
        let (code, out, err, _) = s.bin("pve1", args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    }
    std::fs::write(s.path("broken.toml"), "[cluster\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
        .arg("-c")
        .arg(s.path("broken.toml"))
        .args(["hook", "103", "pre-start"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config error"));
}

/// The guest stopped here (a migration away, a shutdown, a restart): sanoid
/// stops snapshotting at once; a start here again promotes in `pre-start`.
#[test]
fn post_stop_makes_this_node_a_standby_at_once() {
    let s = Setup::new();
    let (code, out, err, _) = s.bin("pve1", &["hook", "103", "post-stop"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        s.sanoid(),
        SANOID.replace("autosnap = yes", "autosnap = no"),
        "{err}"
    );
    assert!(err.contains("becomes a standby"), "{err}");
}

#[test]
fn the_hook_promotes_a_guest_starting_here() {
    let s = Setup::new();
    // HA is starting the guest on pve2 after a failover: it is placed there,
    // not running yet; this node's pools are standby copies.
    s.pve.migrate("pve2");
    s.pve.set(|st| st.guest_status = "stopped".into());
    s.vmlist(Some("pve2"));
    std::fs::write(
        s.path("sanoid.conf"),
        SANOID.replace("autosnap = yes", "autosnap = no"),
    )
    .unwrap();
    let (code, out, err, _) = s.bin("pve2", &["hook", "103", "pre-start"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(s.sanoid(), SANOID, "{err}");
    let rec = std::fs::read_to_string(s.path("state/last-promotion.json")).unwrap();
    assert!(
        rec.contains("\"promoted\": true") && rec.contains("\"node\": \"pve2\""),
        "{rec}"
    );
    // The same start seen by the timer's run is not a master (not running).
    let (code, _, err, _) = s.bin("pve2", &["run", "--dry-run"]);
    assert_eq!(code, Some(4), "{err}");
}

/// The failover policy's requests, against the stand-in: HA is asked to
/// migrate the guest (a form body `node=...`), or to stop it; a token
/// without Sys.Console gets a 403 that is reported, never retried blindly;
/// a hanging API is bounded by the timeout.
#[test]
fn failover_requests_reach_ha_and_refusals_are_reported() {
    use zfs_nfs_replica::failover::{Action, carry_out};
    let s = Setup::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = s.config("pve1");
    let client = zfs_nfs_replica::pve::client::Client::new(&cfg.proxmox).unwrap();
    let out = rt
        .block_on(carry_out(
            &client,
            "ct:103",
            &Action::Migrate { to: "pve2".into() },
        ))
        .unwrap();
    assert!(out.contains("HA migrates ct:103 to pve2"), "{out}");
    let st = s.pve.state();
    assert_eq!(st.guest_node.as_deref(), Some("pve2"));
    assert_eq!(st.crm_state, "migrate");
    assert_eq!(
        st.log.last().unwrap(),
        "pve1 POST /api2/json/cluster/ha/resources/ct:103/migrate node=pve2"
    );

    s.pve.reset();
    let out = rt
        .block_on(carry_out(
            &client,
            "ct:103",
            &Action::Stop { why: "x".into() },
        ))
        .unwrap();
    assert!(out.contains("HA stops ct:103"), "{out}");
    assert_eq!(s.pve.state().crm_state, "stopped");
    assert_eq!(
        s.pve.state().log.last().unwrap(),
        "pve1 PUT /api2/json/cluster/ha/resources/ct:103 state=stopped"
    );

    s.pve.reset();
    s.pve.set(|st| {
        st.fault = Fault::Status(403, r#"{"data":null}"#.into());
        st.fault_only = Some("/migrate");
    });
    let e = rt
        .block_on(carry_out(
            &client,
            "ct:103",
            &Action::Migrate { to: "pve2".into() },
        ))
        .unwrap_err();
    assert!(
        e.starts_with("POST /cluster/ha/resources/ct:103/migrate: HTTP 403")
            && e.contains("Sys.Console"),
        "{e}"
    );
    assert_eq!(
        s.pve.state().guest_node.as_deref(),
        Some("pve1"),
        "nothing moved"
    );
    assert!(!e.contains(&s.secret()), "the token never appears: {e}");

    s.pve.set(|st| {
        st.fault = Fault::Hang;
        st.fault_only = None;
    });
    let started = Instant::now();
    let e = rt
        .block_on(carry_out(
            &client,
            "ct:103",
            &Action::Stop { why: "x".into() },
        ))
        .unwrap_err();
    assert!(e.contains("no answer within 2s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The `pveum` lines and the token file's token id of the README's block
/// that contains `marker`.
fn readme_recipe(marker: &str) -> (Vec<String>, String) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|b| b.contains(marker) && b.contains("pveum"))
        .unwrap_or_else(|| panic!("no README block with {marker}"));
    let lines: Vec<String> = block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pveum "))
        .map(str::to_string)
        .collect();
    let id = block
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("echo '")?
                .split_once("=<secret>'")
                .map(|(id, _)| id.to_string())
        })
        .expect("the block writes the token file");
    (lines, id)
}

impl Setup {
    /// The stand-in enforces `access`; the token file holds token `id`.
    fn with_access(&self, access: common::pve::Access, id: &str) {
        self.pve.set(|s| s.access = Some(access.clone()));
        std::fs::write(self.path("pve-token"), format!("{id}={}\n", self.secret())).unwrap();
    }
}

fn apply(lines: &[String]) -> common::pve::Access {
    let mut a = common::pve::Access::new();
    for l in lines {
        a.pveum(l)
            .unwrap_or_else(|e| panic!("the README's recipe: {e}"));
    }
    a
}

#[test]
fn the_readmes_token_recipe_gives_the_checks_what_they_need() {
    let (lines, id) = readme_recipe("PVEAuditor");
    let access = apply(&lines);
    assert!(
        access.tokens.contains_key(&id),
        "{id} is created: {lines:?}"
    );
    let s = Setup::new();
    s.with_access(access, &id);
    assert_eq!(s.decide("pve1"), Role::Master);
    assert_eq!(
        s.decide("pve2"),
        Role::Standby {
            master: "pve1".into()
        }
    );
    // A read-only token: the failover's HA requests are refused.
    let a = apply(&lines);
    assert!(a.allows(&id, "/", "Sys.Audit") && a.allows(&id, "/vms/103", "VM.Audit"));
    assert!(!a.allows(&id, "/", "Sys.Console"));
}

#[test]
fn the_readmes_token_recipe_fails_without_the_users_role() {
    // The recipe as the README had it before: the role on the token only.
    let (lines, id) = readme_recipe("PVEAuditor");
    let without_user: Vec<String> = lines
        .iter()
        .filter(|l| !(l.starts_with("pveum acl modify") && l.contains("--users")))
        .cloned()
        .collect();
    assert_eq!(without_user.len() + 1, lines.len(), "{lines:?}");
    let s = Setup::new();
    s.with_access(apply(&without_user), &id);
    let why = s.unsure("pve1");
    eprintln!("without the user's role: {why}");
    assert!(why.contains("403") && why.contains("Sys.Audit"), "{why}");
    // Nor would a made-up option pass for a pveum one.
    let mut a = common::pve::Access::new();
    assert!(
        a.pveum("pveum acl modify / --token 'u@pve!t' --role PVEAuditor")
            .is_err()
    );
}

#[test]
fn the_readmes_failover_recipe_may_stop_the_guest_and_the_audit_token_still_may_not() {
    let (ro, audit) = readme_recipe("PVEAuditor");
    let (fo, failover) = readme_recipe("ZfsNfsReplicaFailover");
    let all: Vec<String> = ro.iter().chain(&fo).cloned().collect();
    let a = apply(&all);
    assert!(a.allows(&failover, "/", "Sys.Console"));
    assert!(a.allows(&failover, "/", "Sys.Audit") && a.allows(&failover, "/vms/103", "VM.Audit"));
    assert!(!a.allows(&audit, "/", "Sys.Console"));
    let s = Setup::new();
    s.with_access(a, &failover);
    assert_eq!(s.decide("pve1"), Role::Master);
}

/// `standby` by hand (or `systemctl enable --now` of the boot unit) on the
/// node where the guest runs would make the datasets it serves read-only:
/// refused (exit 4, nothing changed) when `pct status` says it runs here.
#[test]
fn standby_refuses_where_the_guest_runs() {
    let s = Setup::new();
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pct = bin.join("pct");
    let cfg = s.path("pve1.toml");
    std::fs::write(&cfg, s.config_text("pve1")).unwrap();
    let run = |status: &str| {
        std::fs::write(
            &pct,
            format!(
                "#!/bin/sh\n[ \"$1 $2\" = \"status 103\" ] || exit 2\necho 'status: {status}'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&pct, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
            .arg("-c")
            .arg(&cfg)
            .arg("standby")
            .env_remove("JOURNAL_STREAM")
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let before = s.sanoid();
    let (code, err) = run("running");
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("guest 103 runs on this node"), "{err}");
    assert_eq!(s.sanoid(), before, "nothing changed");
    // Stopped here (or no pct at all): a standby, sanoid off at once.
    let (_, err) = run("stopped");
    assert!(
        s.sanoid().contains("autosnap = no"),
        "{err}\n{}",
        s.sanoid()
    );
}

/// One journal entry of the native protocol: `KEY=value` lines, or
/// `KEY\n<u64 le length><value>\n` for a value with a newline.
fn journal_entry(mut d: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    while !d.is_empty() {
        let nl = d.iter().position(|b| *b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            m.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            m.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            d = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    m
}

/// Under systemd the log goes to the journal in its native protocol, each
/// event's fields as journal fields; with `JOURNAL_STREAM` inherited by a
/// process whose stderr goes elsewhere, `<N>` lines on stderr as before.
/// journald's socket is a datagram socket of this test, mounted over
/// /run/systemd/journal in a private mount namespace (`unshare`, as root:
/// the test command runs as root).
#[test]
fn under_systemd_the_log_is_journal_entries_with_their_fields() {
    use std::os::unix::fs::MetadataExt;
    let s = Setup::new();
    let jdir = s.path("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind(jdir.join("socket")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cfg = s.path("pve1.toml");
    // The peer (an address nothing answers) fails fast.
    let text = format!(
        "{}\n[ssh]\nconnect_timeout = \"1s\"\n",
        s.config_text("pve1")
    );
    std::fs::write(&cfg, text).unwrap();
    let run = |stream_of: Option<&std::path::Path>| {
        let err = s.path("stderr");
        let file = std::fs::File::create(&err).unwrap();
        let named = stream_of.unwrap_or(&err);
        let m = std::fs::metadata(named).unwrap();
        let script = format!(
            "mkdir -p /run/systemd/journal && mount --bind '{}' /run/systemd/journal && exec '{}' -c '{}' run --dry-run --pool zpool1",
            jdir.display(),
            env!("CARGO_BIN_EXE_zfs-nfs-replica"),
            cfg.display()
        );
        let st = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .status()
            .expect("unshare (util-linux)");
        assert!(st.code().is_some(), "{st}");
        std::fs::read_to_string(&err).unwrap()
    };
    let stderr = run(None);
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 65536];
    sock.set_nonblocking(true).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        // (An empty datagram: the crate's check that the socket answers.)
        if n > 0 {
            entries.push(journal_entry(&buf[..n]));
        }
    }
    assert!(!entries.is_empty(), "no journal entry; stderr: {stderr}");
    assert!(!stderr.contains("<6>"), "{stderr}");
    let agree = entries
        .iter()
        .find(|e| {
            e.get("MESSAGE")
                .is_some_and(|m| m.contains("master checks agree"))
        })
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(agree["SYSLOG_IDENTIFIER"], "zfs-nfs-replica", "{agree:?}");
    assert_eq!(
        agree["PRIORITY"], "5",
        "INFO is journald's notice: {agree:?}"
    );
    // The event's own fields, as journal fields (`journalctl NODE=pve1`).
    let master = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m == "this node is master"))
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(master["NODE"], "pve1", "{master:?}");
    assert!(
        entries
            .iter()
            .any(|e| e["PRIORITY"] == "4" && e["MESSAGE"].contains("pool zpool1 -> pve2")),
        "the pool's summary, a warning: {entries:#?}"
    );
    // Inherited, but stderr is elsewhere (a task log, a pipe): the lines.
    let other = s.path("other");
    std::fs::write(&other, "").unwrap();
    let stderr = run(Some(&other));
    assert!(stderr.contains("<6>"), "{stderr}");
    assert!(sock.recv(&mut buf).is_err(), "nothing sent to the journal");
}
