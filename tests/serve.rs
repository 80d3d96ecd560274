//! The replication key's forced command through a real OpenSSH server:
//! `authorized_keys` says `command="... zfs-nfs-replica serve",restrict`,
//! and a `zfs` stand-in on the forced command's PATH records what it was
//! asked to run.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestSshd;
use zfs_nfs_replica::cmdline::Cmd;
use zfs_nfs_replica::runner::{Runner, SystemRunner};
use zfs_nfs_replica::ssh::{Peer, Target};
use zfs_nfs_replica::zfs::{Op, RecvSpec};

/// `serve`'s exit code for a refused request (the README's table).
const REFUSED: i32 = 6;

struct Node {
    sshd: TestSshd,
    dir: tempfile::TempDir,
}

impl Node {
    /// An sshd whose only key runs `serve` with this node's config; `zfs`
    /// is a script that logs its argv (and swallows a stream on stdin).
    fn start() -> Node {
        let sshd = TestSshd::start();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = d.join("zfs.log");
        let zfs = bin.join("zfs");
        std::fs::write(
            &zfs,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"zfs $*\" >> {}\ncase \"$1\" in receive) cat >/dev/null ;; list) echo 'zpool1\t1' ;; esac\n",
                log.display()
            ),
        )
        .unwrap();
        chmod(&zfs, 0o755);
        let run = d.join("run");
        std::fs::create_dir(&run).unwrap();
        let cfg = d.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[cluster]\nguest = 103\nnode = \"pve2\"\nnodes = {{ pve1 = \"127.0.0.1\", pve2 = \"127.0.0.1\" }}\n\
                 [proxmox]\nurl = \"https://127.0.0.1:9\"\ntoken_file = \"{}\"\ntimeout = \"1s\"\n\
                 [paths]\nrun_dir = \"{}\"\nstate_dir = \"{}\"\n[[pool]]\nname = \"zpool1\"\n",
                d.join("no-token").display(),
                run.display(),
                d.join("state").display()
            ),
        )
        .unwrap();
        let key = std::fs::read_to_string(sshd.client_key.with_extension("pub")).unwrap();
        std::fs::write(
            sshd.dir.path().join("authorized_keys"),
            format!(
                "command=\"PATH={}:/usr/bin:/bin exec {} --config {} serve\",restrict {key}",
                bin.display(),
                env!("CARGO_BIN_EXE_zfs-nfs-replica"),
                cfg.display()
            ),
        )
        .unwrap();
        Node { sshd, dir }
    }

    fn zfs_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zfs.log")).unwrap_or_default()
    }

    /// This node's recorded answer to "who is master?", `secs_ago` old.
    fn record_answer(&self, role: &str, master: Option<&str>, secs_ago: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let answer = serde_json::json!({
            "at": now - secs_ago,
            "answer": { "node": "pve2", "role": role, "master": master, "reason": null, "handover_from": null }
        });
        std::fs::write(
            self.dir.path().join("run/role-answer.json"),
            answer.to_string(),
        )
        .unwrap();
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn runner() -> SystemRunner {
    SystemRunner {
        kill_grace: Duration::from_secs(2),
    }
}

/// Run `f` with a connected peer.
fn with_peer<T>(node: &Node, f: impl AsyncFnOnce(&SystemRunner, &Peer) -> T) -> T {
    let run_dir: PathBuf = node.dir.path().join("client");
    common::rt().block_on(async {
        let r = runner();
        let target = Target {
            name: "pve2".into(),
            addr: "127.0.0.1".into(),
        };
        let peer = Peer::connect(&r, &node.sshd.ssh_config(node.sshd.port), &target, &run_dir)
            .await
            .unwrap();
        let out = f(&r, &peer).await;
        peer.close(Duration::from_secs(5)).await;
        out
    })
}

#[test]
fn a_read_runs_exactly_the_operation_asked() {
    let node = Node::start();
    let op = Op::List {
        roots: vec!["zpool1".into()],
    };
    let out = with_peer(&node, async |r, p| {
        r.output(&p.request(&op), Duration::from_secs(20))
            .await
            .unwrap()
    });
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "zpool1\t1\n");
    assert_eq!(node.zfs_log(), format!("{}\n", op.to_cmd()));
}

#[test]
fn anything_else_is_refused_with_one_line_and_runs_nothing() {
    let node = Node::start();
    let hostile = [
        Cmd::new("sh").args(["-c", "id"]),
        Cmd::new("zfs").args(["destroy", "-r", "zpool1"]),
        Cmd::new("zfs-nfs-replica").args(["serve", "{\"v\":1,\"op\":{\"Send\":{\"snapshot\":\"zpool1@s\",\"from\":\"Full\",\"raw\":false,\"properties\":false}}}"]),
        Cmd::new("zfs-nfs-replica").args(["serve", "{\"v\":1,\"op\":{\"List\":{\"roots\":[\"rpool\"]}}}"]),
        Cmd::new("zfs-nfs-replica").args(["serve", "{\"v\":1,\"op\":{\"List\":{\"roots\":[\"zpool1\"]}}}; id"]),
    ];
    let outs = with_peer(&node, async |r, p| {
        let mut outs = Vec::new();
        for c in &hostile {
            outs.push(
                r.output(&p.remote(c), Duration::from_secs(20))
                    .await
                    .unwrap(),
            );
        }
        outs
    });
    for (c, out) in hostile.iter().zip(outs) {
        assert_eq!(out.status.code(), Some(REFUSED), "{c}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{c}: {:?}", out.stderr);
        assert!(lines[0].contains("refused"), "{c}: {}", lines[0]);
    }
    assert_eq!(node.zfs_log(), "", "a refused request ran zfs");
}

/// The receiver guards itself: it receives only while it is a standby by
/// its own answer (recorded within a minute, or asked anew of its API).
#[test]
fn a_receive_needs_this_node_to_be_a_standby() {
    let node = Node::start();
    let recv = Op::Recv(RecvSpec {
        dataset: "zpool1/data".into(),
        force: false,
    });
    let attempt = |node: &Node| {
        with_peer(node, async |r, p| {
            r.output(&p.request(&recv), Duration::from_secs(30))
                .await
                .unwrap()
        })
    };
    // No answer recorded and no API to ask: it cannot tell, so no.
    let out = attempt(&node);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot tell who is master"),
        "{}",
        out.stderr
    );
    // It believes it is master itself: no.
    node.record_answer("master", Some("pve2"), 5);
    let out = attempt(&node);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", out.stderr);
    assert!(
        out.stderr.contains("is master by its own checks"),
        "{}",
        out.stderr
    );
    assert_eq!(node.zfs_log(), "");
    // A standby of pve1, answered five seconds ago: yes.
    node.record_answer("standby", Some("pve1"), 5);
    let out = attempt(&node);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(node.zfs_log(), format!("{}\n", recv.to_cmd()));
    // The same answer, ten minutes old: asked anew (no API: refused).
    node.record_answer("standby", Some("pve1"), 600);
    let out = attempt(&node);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", out.stderr);
}

/// A request that is not UTF-8 (sshd passes the bytes as they came) is
/// refused like any other, before anything runs.
#[test]
fn a_request_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStringExt;
    let node = Node::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
        .arg("--config")
        .arg(node.dir.path().join("config.toml"))
        .arg("serve")
        .env(
            "SSH_ORIGINAL_COMMAND",
            std::ffi::OsString::from_vec(b"zfs-nfs-replica serve '\xff\xfe'".to_vec()),
        )
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", node.dir.path().join("bin").display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(REFUSED));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert_eq!(node.zfs_log(), "");
}
