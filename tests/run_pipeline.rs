//! `run`, end to end, on a scripted runner: the master checks' decision
//! handed in, every command (ssh, zfs, zpool, the peer's role answer, the
//! send | receive pipe) answered by a fake in the shape of the real output.
//! What a whole run does is checked from the outside: its ending, the
//! commands it issued, sanoid.conf, and the status it leaves behind.

use std::sync::Mutex;
use std::time::Duration;

use zfs_nfs_replica::cli::RunArgs;
use zfs_nfs_replica::cmdline::Cmd;
use zfs_nfs_replica::commands::run::run_with;
use zfs_nfs_replica::config::{self, Config};
use zfs_nfs_replica::exit::Exit;
use zfs_nfs_replica::pve::{Decision, Role};
use zfs_nfs_replica::runner::{Output, PipeOutput, PipeSpec, RunError, Runner};

fn status(code: i32) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(code << 8)
}

/// One node's ZFS, as its commands answer.
#[derive(Default)]
struct Node {
    list: String,
    role_props: String,
    /// `zpool` cannot run at all (`/dev/zfs` missing).
    zpool_broken: bool,
}

struct Fake {
    local: Node,
    remote: Node,
    /// The peer's own answer to "may I write into you?".
    peer_role: String,
    log: Mutex<Vec<String>>,
}

impl Fake {
    /// `local: zfs ...`, `remote: zfs ...` or `ssh-master`.
    fn describe(cmd: &Cmd) -> String {
        if cmd.program == "ssh" && cmd.args.iter().any(|a| a == "-M") {
            "ssh-master".into()
        } else if cmd.program == "ssh" {
            // What the peer's `serve` runs for the request.
            let op = zfs_nfs_replica::serve::parse_line(cmd.args.last().unwrap()).unwrap();
            format!("remote: {}", op.to_cmd().to_shell())
        } else {
            format!("local: {cmd}")
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn zpool_status(pool: &str) -> String {
    format!(
        "  pool: {pool}\n state: ONLINE\n  scan: scrub repaired 0B in 00:00:00 with 0 errors on Sun Nov 22 16:54:43 2026\nconfig:\n\n\tNAME        STATE     READ WRITE CKSUM\n\t{pool}      ONLINE       0     0     0\n\t  sda       ONLINE       0     0     0\n\nerrors: No known data errors\n"
    )
}

impl Runner for Fake {
    async fn output(&self, cmd: &Cmd, _timeout: Duration) -> Result<Output, RunError> {
        let d = Self::describe(cmd);
        self.log.lock().unwrap().push(d.clone());
        let ok = |stdout: String| {
            Ok(Output {
                status: status(0),
                stdout,
                stderr: String::new(),
            })
        };
        if d == "ssh-master" {
            return ok(String::new());
        }
        let (side, inner) = d.split_once(": ").unwrap();
        let node = if side == "local" {
            &self.local
        } else {
            &self.remote
        };
        let inner = inner.trim_matches('\'');
        if node.zpool_broken && inner.starts_with("zpool ") {
            return Ok(Output {
                status: status(1),
                stdout: String::new(),
                stderr: "The ZFS modules are not loaded.\nTry running '/sbin/modprobe zfs' as root to load them.\n".into(),
            });
        }
        if inner.starts_with("zfs list ") {
            ok(node.list.clone())
        } else if inner.starts_with("zfs get ") {
            ok(node.role_props.clone())
        } else if inner.starts_with("zpool status") {
            ok(zpool_status("zpool1"))
        } else if inner.starts_with("zpool list") {
            ok("zpool1\tONLINE\t251658240\t8598528\t243059712\n".into())
        } else if inner.starts_with("zfs-nfs-replica role --json") {
            ok(self.peer_role.clone())
        } else if inner.starts_with("zfs holds ")
            || inner.starts_with("zfs hold ")
            || inner.starts_with("zfs release ")
            || inner.starts_with("zfs inherit ")
            || inner.starts_with("zfs set readonly=on ")
            || inner.starts_with("zfs mount ")
        {
            ok(String::new())
        } else {
            Ok(Output {
                status: status(1),
                stdout: String::new(),
                stderr: format!("fake: unexpected {inner}"),
            })
        }
    }

    async fn pipe(
        &self,
        spec: PipeSpec<'_>,
        on_send_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<PipeOutput, RunError> {
        let (s, r) = (Self::describe(spec.send), Self::describe(spec.recv));
        self.log.lock().unwrap().push(format!("{s} | {r}"));
        on_send_line("size\t4096");
        on_send_line("00:00:01\t4096\tzpool1@b");
        Ok(PipeOutput {
            send_stderr: String::new(),
            recv_stderr: String::new(),
            elapsed: Duration::from_millis(10),
        })
    }
}

/// `zfs list -H -p -o name,type,guid,createtxg,creation,used,referenced,written,userrefs,receive_resume_token,encryption`
fn listing(snaps: &[(&str, u64)]) -> String {
    let mut s =
        "zpool1\tfilesystem\t77\t1\t1700000000\t9000000\t9000000\t0\t-\t-\toff\n".to_string();
    for (name, guid) in snaps {
        s.push_str(&format!(
            "zpool1@{name}\tsnapshot\t{guid}\t{guid}\t{}\t0\t9000000\t100\t0\t-\toff\n",
            1_700_000_000 + guid
        ));
    }
    s
}

/// `zfs get -H -p -r -t filesystem,volume -o name,property,value,source readonly,mounted,canmount,mountpoint`
fn role_props(readonly: &str, source: &str) -> String {
    format!(
        "zpool1\treadonly\t{readonly}\t{source}\nzpool1\tmounted\tyes\t-\nzpool1\tcanmount\ton\tdefault\nzpool1\tmountpoint\t/zpool1\tdefault\n"
    )
}

const SANOID: &str = "[zpool1]\n\tuse_template = production\n\tautosnap = no\n\n[template_production]\n\thourly = 36\n\tautoprune = yes\n";

fn setup() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(dir.path().join("sanoid.conf"), SANOID).unwrap();
    let text = format!(
        "[cluster]\nguest = 103\nnode = \"pve1\"\nnodes = {{ pve1 = \"192.168.100.10\", pve2 = \"192.168.100.20\" }}\n\
         [sanoid]\nconfig = \"{}\"\n\
         [paths]\nrun_dir = \"{}\"\nstate_dir = \"{}\"\n\
         [[pool]]\nname = \"zpool1\"\n",
        p("sanoid.conf"),
        p("run"),
        p("state")
    );
    let cfg = config::parse_str(&text, "test.toml").unwrap();
    (dir, cfg)
}

fn args() -> RunArgs {
    RunArgs {
        dry_run: false,
        pools: vec![],
        overwrite_empty_target: false,
        accept_size_change: vec![],
        handover: false,
    }
}

fn decision(role: Role) -> Decision {
    Decision {
        local: "pve1".into(),
        role,
        ha_sid: Some("ct:103".into()),
    }
}

fn status_json(dir: &tempfile::TempDir) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.path().join("state/status.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_master_run_turns_its_pools_on_and_sends_what_is_new() {
    let (dir, cfg) = setup();
    let fake = Fake {
        local: Node {
            list: listing(&[("a", 1), ("b", 2)]),
            role_props: role_props("on", "local"),
            zpool_broken: false,
        },
        remote: Node {
            list: listing(&[("a", 1)]),
            ..Node::default()
        },
        peer_role:
            r#"{"node":"pve2","role":"standby","master":"pve1","reason":null,"handover_from":null}"#
                .into(),
        log: Mutex::new(Vec::new()),
    };
    let ending = run_with(&cfg, &args(), &fake, async { decision(Role::Master) }).await;
    let log = fake.log();
    assert_eq!(ending, Exit::Ok, "{log:#?}");
    // The master's copy back to writable, before anything is sent.
    let inherit = log
        .iter()
        .position(|l| l == "local: zfs inherit readonly zpool1")
        .unwrap_or_else(|| panic!("no inherit: {log:#?}"));
    let pipe = log
        .iter()
        .position(|l| l.contains(" | remote: "))
        .unwrap_or_else(|| panic!("nothing sent: {log:#?}"));
    assert!(inherit < pipe);
    assert!(log[pipe].contains("-I zpool1@a zpool1@b"), "{}", log[pipe]);
    // Asked the peer before writing into it; the new base held on both sides.
    let asked = log
        .iter()
        .position(|l| l.contains("zfs-nfs-replica role --json"))
        .unwrap();
    assert!(asked < pipe);
    assert!(log.contains(&"local: zfs hold zfs-nfs-replica:pve2 zpool1@b".to_string()));
    assert!(
        log.iter()
            .any(|l| l.starts_with("remote: ")
                && l.contains("zfs hold zfs-nfs-replica:pve1 zpool1@b")),
        "{log:#?}"
    );
    // sanoid takes snapshots on the master only.
    let sanoid = std::fs::read_to_string(dir.path().join("sanoid.conf")).unwrap();
    assert!(sanoid.contains("autosnap = yes"), "{sanoid}");
    let s = status_json(&dir);
    assert_eq!(s["role"]["role"], "master");
    assert_eq!(s["last_run"]["exit_code"], 0);
    assert_eq!(s["pools"][0]["outcome"], "replicated");
    assert_eq!(s["pools"][0]["peer"], "pve2");
}

/// A run on a node whose checks say pve2 is master; its one dataset holds
/// snapshot `a`.
async fn standby_run(cfg: &Config, role_props: String, zpool_broken: bool) -> (Fake, Exit) {
    let fake = Fake {
        local: Node {
            list: listing(&[("a", 1)]),
            role_props,
            zpool_broken,
        },
        remote: Node::default(),
        peer_role: String::new(),
        log: Mutex::new(Vec::new()),
    };
    let standby = Role::Standby {
        master: "pve2".into(),
    };
    let ending = run_with(cfg, &args(), &fake, async { decision(standby) }).await;
    (fake, ending)
}

#[tokio::test]
async fn a_standby_run_locks_its_copy_and_writes_nothing_anywhere_else() {
    let (dir, cfg) = setup();
    std::fs::write(
        dir.path().join("sanoid.conf"),
        SANOID.replace("autosnap = no", "autosnap = yes"),
    )
    .unwrap();
    let (fake, ending) = standby_run(&cfg, role_props("off", "default"), false).await;
    let log = fake.log();
    assert_eq!(ending, Exit::NothingToDo, "{log:#?}");
    assert!(
        log.contains(&"local: zfs set readonly=on zpool1".to_string()),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .all(|l| !l.starts_with("remote: ") && l != "ssh-master"),
        "a standby talks to nobody: {log:#?}"
    );
    let sanoid = std::fs::read_to_string(dir.path().join("sanoid.conf")).unwrap();
    assert!(sanoid.contains("autosnap = no"), "{sanoid}");
    let s = status_json(&dir);
    assert_eq!(s["role"]["role"], "standby");
    assert_eq!(s["role"]["master"], "pve2");
    assert_eq!(s["last_run"]["exit_code"], 1);
    assert_eq!(s["received"][0]["snapshot"]["name"], "a");
}

/// A standby whose `zpool` cannot run at all is no "nothing to do": exit
/// 3, and its status and metrics say why.
#[tokio::test]
async fn a_standby_that_cannot_read_its_pools_says_so_in_its_exit_code() {
    let (dir, cfg) = setup();
    std::fs::write(dir.path().join("sanoid.conf"), SANOID).unwrap();
    let (fake, ending) = standby_run(&cfg, role_props("on", "local"), true).await;
    assert_eq!(ending, Exit::Transient, "{:#?}", fake.log());
    let s = status_json(&dir);
    assert_eq!(s["last_run"]["exit_code"], 3);
    // What `status` and the metrics judge from: the pool's health, failed.
    assert_eq!(s["health"][0]["level"], "fail", "{s}");
    assert!(
        s["health"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("modules are not loaded"),
        "{s}"
    );
}

#[tokio::test]
async fn nobody_surely_master_touches_nothing() {
    let (dir, cfg) = setup();
    let fake = Fake {
        local: Node::default(),
        remote: Node::default(),
        peer_role: String::new(),
        log: Mutex::new(Vec::new()),
    };
    let unsure = Role::Unsure {
        reason: "the API and .vmlist disagree".into(),
    };
    let ending = run_with(&cfg, &args(), &fake, async { decision(unsure) }).await;
    assert_eq!(ending, Exit::Refused);
    assert_eq!(fake.log(), Vec::<String>::new(), "no command at all");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sanoid.conf")).unwrap(),
        SANOID
    );
    assert_eq!(status_json(&dir)["role"]["role"], "unsure");
}
