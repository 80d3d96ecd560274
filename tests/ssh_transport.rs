//! The ssh transport against a real OpenSSH server on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{FreezeProxy, TestSshd, pids_matching};
use zfs_nfs_replica::cmdline::Cmd;
use zfs_nfs_replica::runner::{PipeSpec, RunError, Runner, SystemRunner};
use zfs_nfs_replica::ssh::{Peer, SSH_FAILURE, Target};

fn runner() -> SystemRunner {
    SystemRunner {
        kill_grace: Duration::from_secs(2),
    }
}

fn target() -> Target {
    Target {
        name: "peer".into(),
        addr: "127.0.0.1".into(),
    }
}

#[test]
fn hostile_arguments_reach_the_remote_program_intact() {
    let sshd = TestSshd::start();
    let run_dir = tempfile::tempdir().unwrap();
    let canary = run_dir.path().join("pwned");
    let hostile: Vec<String> = vec![
        "plain".into(),
        "my data@snap 1".into(),
        "it's".into(),
        format!("$(touch {})", canary.display()),
        format!("`touch {}`", canary.display()),
        format!("; touch {} #", canary.display()),
        "\"double\" quotes".into(),
        "back\\slash".into(),
        "*".into(),
        "~".into(),
        "tab\there".into(),
        "-n".into(),
        "--".into(),
        "#hash".into(),
        "".into(),
        "ümlaut & <redirect> | pipe".into(),
        "zpool1/a b:c.d_e-f@autosnap_2024-01-01_00:00:00_hourly".into(),
    ];
    common::rt().block_on(async {
        let r = runner();
        let peer = Peer::connect(&r, &sshd.ssh_config(sshd.port), &target(), run_dir.path())
            .await
            .unwrap();
        let cmd = peer.remote(&Cmd::new("printf").arg("%s\\n").args(hostile.clone()));
        let out = r.output(&cmd, Duration::from_secs(20)).await.unwrap();
        assert!(out.success(), "{}", out.stderr);
        let got: Vec<&str> = out.stdout.strip_suffix('\n').unwrap().split('\n').collect();
        assert_eq!(got, hostile.iter().map(String::as_str).collect::<Vec<_>>());
        peer.close(Duration::from_secs(5)).await;
    });
    assert!(
        !canary.exists(),
        "a hostile argument was executed by the remote shell"
    );
}

#[test]
fn streams_a_large_payload_through_the_master_connection() {
    let sshd = TestSshd::start();
    let run_dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("payload");
    // 64 MiB of incompressible data, reproducible.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("openssl enc -aes-128-ctr -pass pass:x -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c 67108864 > '{}'", src.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let dst = work.path().join("received");
    common::rt().block_on(async {
        let r = runner();
        let peer = Peer::connect(&r, &sshd.ssh_config(sshd.port), &target(), run_dir.path())
            .await
            .unwrap();
        // The sender reports progress on stderr like `zfs send -P -v` does.
        let send = Cmd::new("sh").arg("-c").arg(format!(
            "echo 'size\t67108864' >&2; cat '{}'; echo '00:00:01\t67108864\tx@y' >&2",
            src.display()
        ));
        let recv = peer.remote(
            &Cmd::new("sh")
                .arg("-c")
                .arg(format!("cat > '{}'", dst.display())),
        );
        let mut lines = Vec::new();
        let out = r
            .pipe(
                PipeSpec {
                    send: &send,
                    recv: &recv,
                    stall: Duration::from_secs(30),
                    limit: Duration::from_secs(120),
                    finish: Duration::from_secs(30),
                },
                &mut |l| {
                    lines.push(l.to_string());
                    true
                },
            )
            .await
            .unwrap();
        assert!(out.elapsed < Duration::from_secs(120));
        assert_eq!(lines, ["size\t67108864", "00:00:01\t67108864\tx@y"]);
        peer.close(Duration::from_secs(5)).await;
    });
    let a = std::fs::read(&src).unwrap();
    let b = std::fs::read(&dst).unwrap();
    assert_eq!(a.len(), 64 << 20);
    assert!(a == b, "payload differs after the trip");
}

#[test]
fn a_failing_remote_command_reports_its_own_status_and_stderr() {
    let sshd = TestSshd::start();
    let run_dir = tempfile::tempdir().unwrap();
    common::rt().block_on(async {
        let r = runner();
        let peer = Peer::connect(&r, &sshd.ssh_config(sshd.port), &target(), run_dir.path())
            .await
            .unwrap();
        let out = r
            .output(
                &peer.remote(&Cmd::new("sh").args([
                    "-c",
                    "echo \"cannot open 'zpool9': dataset does not exist\" >&2; exit 1",
                ])),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "the remote status, not ssh's 255"
        );
        assert!(out.stderr.contains("dataset does not exist"));
        // A receiver that fails mid-stream: its message wins over the sender's broken pipe.
        let send = Cmd::new("sh").args(["-c", "yes"]);
        let recv = peer.remote(&Cmd::new("sh").args([
            "-c",
            "head -c 1000 >/dev/null; echo 'cannot receive: out of space' >&2; exit 1",
        ]));
        let e = r
            .pipe(
                PipeSpec {
                    send: &send,
                    recv: &recv,
                    stall: Duration::from_secs(30),
                    limit: Duration::from_secs(60),
                    finish: Duration::from_secs(10),
                },
                &mut |_| true,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RunError::Failed { stderr, .. } if stderr.contains("out of space")),
            "{e}"
        );
        peer.close(Duration::from_secs(5)).await;
    });
}

#[test]
fn a_dropped_connection_fails_fast_with_ssh_status() {
    let mut sshd = TestSshd::start();
    let run_dir = tempfile::tempdir().unwrap();
    common::rt().block_on(async {
        let r = runner();
        let peer = Peer::connect(&r, &sshd.ssh_config(sshd.port), &target(), run_dir.path())
            .await
            .unwrap();
        assert!(peer.check(Duration::from_secs(5)).await.is_ok());
        sshd.stop();
        // The master notices the closed TCP connection.
        let deadline = Instant::now() + Duration::from_secs(15);
        while peer.check(Duration::from_secs(5)).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the master did not notice the dropped connection"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let started = Instant::now();
        let out = r
            .output(&peer.remote(&Cmd::new("true")), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(SSH_FAILURE));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "must not try to open a new connection"
        );
        peer.close(Duration::from_secs(5)).await;
    });
}

#[test]
fn a_peer_that_stops_answering_times_out_and_leaves_nothing_running() {
    let sshd = TestSshd::start();
    let proxy = FreezeProxy::start(sshd.port);
    let run_dir = tempfile::tempdir().unwrap();
    common::rt().block_on(async {
        let r = runner();
        let mut cfg = sshd.ssh_config(proxy.port);
        // Long keepalives so the deadline, not ssh, is what fires first.
        cfg.server_alive_interval = zfs_nfs_replica::config::Dur::secs(30);
        let peer = Peer::connect(&r, &cfg, &target(), run_dir.path())
            .await
            .unwrap();
        let ctl = peer.control_socket().display().to_string();
        proxy.freeze();
        let started = Instant::now();
        let e = r
            .output(
                &peer.remote(&Cmd::new("echo").arg("hello")),
                Duration::from_secs(3),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("timed out after 3s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(3 + 2 * 2 + 2),
            "TERM, grace, KILL are bounded"
        );
        // The stream variant: a stalled transfer is killed too.
        let send = Cmd::new("sh").args(["-c", "echo '00:00:01\t1\tx@y' >&2; yes"]);
        let recv = peer.remote(&Cmd::new("sh").args(["-c", "cat >/dev/null"]));
        let e = r
            .pipe(
                PipeSpec {
                    send: &send,
                    recv: &recv,
                    stall: Duration::from_secs(2),
                    limit: Duration::from_secs(60),
                    finish: Duration::from_secs(5),
                },
                &mut |l| l.starts_with("00:"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Stalled { .. }), "{e}");
        // No mux client of ours is left (the master itself is closed below).
        let left: Vec<u32> = pids_matching(&ctl)
            .into_iter()
            .filter(|p| !is_master(*p))
            .collect();
        assert!(left.is_empty(), "processes left running: {left:?}");
        peer.close(Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            pids_matching(&ctl).is_empty(),
            "the master is still running after close"
        );
    });
}

fn is_master(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("\0-M\0"))
        .unwrap_or(false)
}

#[test]
fn connecting_to_a_silent_server_is_bounded() {
    // Accepts TCP, never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let sshd = TestSshd::start();
    let run_dir = tempfile::tempdir().unwrap();
    common::rt().block_on(async {
        let r = runner();
        let started = Instant::now();
        let e = Peer::connect(&r, &sshd.ssh_config(port), &target(), run_dir.path())
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3 * 3 + 5 + 2 * 2 + 2),
            "took {:?}",
            started.elapsed()
        );
        assert!(e.to_string().contains("cannot connect"), "{e}");
    });
}

#[test]
fn unknown_host_key_is_refused() {
    let sshd = TestSshd::start();
    let run_dir = tempfile::tempdir().unwrap();
    let mut cfg = sshd.ssh_config(sshd.port);
    std::fs::write(cfg.known_hosts.as_ref().unwrap(), "").unwrap();
    cfg.known_hosts = cfg.known_hosts.clone();
    common::rt().block_on(async {
        let e = Peer::connect(&runner(), &cfg, &target(), run_dir.path())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("Host key verification failed"),
            "{e}"
        );
    });
}
