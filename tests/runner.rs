//! The process runner on real processes: deadlines, process groups, stalls.

mod common;

use std::time::{Duration, Instant};

use common::pids_matching;
use zfs_nfs_replica::cmdline::Cmd;
use zfs_nfs_replica::runner::{PipeSpec, RunError, Runner, SystemRunner};

fn runner() -> SystemRunner {
    SystemRunner {
        kill_grace: Duration::from_secs(1),
    }
}

fn marker() -> String {
    format!(
        "zfsnr-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// No process whose command line carries `marker` is still running.
fn assert_nothing_left(marker: &str) {
    std::thread::sleep(Duration::from_millis(200));
    let left = pids_matching(marker);
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn output_captures_stdout_stderr_and_status() {
    common::rt().block_on(async {
        let out = runner()
            .output(
                &Cmd::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    });
}

#[test]
fn output_lines_hands_over_every_line_as_it_comes_and_keeps_none() {
    common::rt().block_on(async {
        // 200k lines, 3.3 MB: many reads, lines split across them; the last
        // line has no newline; an empty line stays a line.
        let script = "seq 1 200000 | sed 's/$/\tabcdef/'; echo; printf tail; echo err >&2; exit 2";
        let mut lines = Vec::new();
        let out = runner()
            .output_lines(
                &Cmd::new("sh").args(["-c", script]),
                Duration::from_secs(30),
                &mut |l| lines.push(l.to_string()),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "", "nothing is kept");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(lines.len(), 200_002);
        for (i, l) in lines[..200_000].iter().enumerate() {
            assert_eq!(*l, format!("{}\tabcdef", i + 1));
        }
        assert_eq!(lines[200_000], "");
        assert_eq!(lines[200_001], "tail");
    });
}

#[test]
fn output_lines_is_bounded_by_its_deadline_too() {
    let m = marker();
    common::rt().block_on(async {
        let mut n = 0;
        let e = runner()
            .output_lines(
                &Cmd::new("sh").args(["-c", &format!("echo one; sleep 300 # {m}")]),
                Duration::from_secs(1),
                &mut |_| n += 1,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        assert_eq!(n, 1, "the line before the hang arrived");
    });
    assert_nothing_left(&m);
}

#[test]
fn missing_program_is_a_spawn_error_naming_it() {
    common::rt().block_on(async {
        let e = runner()
            .output(
                &Cmd::new("/nonexistent/zfs").arg("list"),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }));
        assert!(e.to_string().contains("/nonexistent/zfs list"), "{e}");
    });
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let m = marker();
    common::rt().block_on(async {
        let started = Instant::now();
        // A child that starts a grandchild ignoring SIGTERM: only the group
        // SIGKILL after the grace period gets rid of it.
        let script =
            format!("sh -c 'trap \"\" TERM; exec sleep 300 # {m}' & trap '' TERM; sleep 300 # {m}");
        let e = runner()
            .output(
                &Cmd::new("sh").args(["-c", &script]),
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RunError::Timeout {
                    stuck_pid: None,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("timed out after 1s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    });
    assert_nothing_left(&m);
}

#[test]
fn a_stopped_sender_is_a_stall_and_nothing_is_left_running() {
    let m = marker();
    common::rt().block_on(async {
        // Progress lines like `zfs send -P -v`, then the sender stops itself
        // (SIGSTOP, as a hung `zfs send` looks from outside).
        let send = Cmd::new("sh").args([
            "-c",
            &format!("echo '00:00:01\t1\tp@s' >&2; echo data; kill -STOP $$; echo never # {m}"),
        ]);
        let recv = Cmd::new("sh").args(["-c", &format!("cat >/dev/null # {m}")]);
        let started = Instant::now();
        let e = runner()
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
        assert!(e.to_string().contains("no progress for 2s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
    });
    assert_nothing_left(&m);
}

#[test]
fn pipe_moves_bytes_and_reports_sender_failure() {
    common::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let send = Cmd::new("sh").args(["-c", "seq 1 100000"]);
        let recv = Cmd::new("sh").args(["-c", &format!("cat > '{}'", out.display())]);
        runner()
            .pipe(PipeSpec { send: &send, recv: &recv, stall: Duration::from_secs(5), limit: Duration::from_secs(30), finish: Duration::from_secs(5) }, &mut |_| true)
            .await
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), 100000);
        assert_eq!(text.lines().last(), Some("100000"));
        // The sender fails, the receiver is happy with what it got: still an error.
        let send = Cmd::new("sh").args(["-c", "echo partial; echo \"cannot open 'p/a@s': dataset does not exist\" >&2; exit 1"]);
        let e = runner()
            .pipe(PipeSpec { send: &send, recv: &recv, stall: Duration::from_secs(5), limit: Duration::from_secs(30), finish: Duration::from_secs(5) }, &mut |_| false)
            .await
            .unwrap_err();
        assert!(matches!(&e, RunError::Failed { stderr, .. } if stderr.contains("dataset does not exist")), "{e}");
    });
}

/// Both sides fail: the cause is named. A receiver that only saw its stream
/// end early points at the sender (its stderr says why: here a resume token
/// whose snapshot is gone, which the engine then cleans up); a receiver
/// that refused the stream is the cause, and the sender's broken pipe is not.
#[test]
fn when_both_sides_fail_the_cause_is_reported() {
    common::rt().block_on(async {
        let send = Cmd::new("sh").args(["-c", "echo \"cannot resume send: 'zpool1/a@s1' used in the initial send no longer exists\" >&2; exit 255"]);
        let recv = Cmd::new("sh").args(["-c", "cat >/dev/null; echo 'cannot receive: failed to read from stream' >&2; exit 1"]);
        let e = runner()
            .pipe(PipeSpec { send: &send, recv: &recv, stall: Duration::from_secs(5), limit: Duration::from_secs(30), finish: Duration::from_secs(5) }, &mut |_| false)
            .await
            .unwrap_err();
        assert!(matches!(&e, RunError::Failed { cmd, stderr, .. } if cmd.starts_with("sh") && stderr.contains("no longer exists")), "{e}");
        assert_eq!(zfs_nfs_replica::zfs::classify(e.stderr().unwrap()), zfs_nfs_replica::zfs::ZfsErrorKind::StaleResumeToken);
        let send = Cmd::new("sh").args(["-c", "head -c 1000000 /dev/zero; echo 'broken pipe' >&2; exit 1"]);
        let recv = Cmd::new("sh").args(["-c", "head -c 10 >/dev/null; echo 'cannot receive incremental stream: destination zpool1/a has been modified' >&2; exit 1"]);
        let e = runner()
            .pipe(PipeSpec { send: &send, recv: &recv, stall: Duration::from_secs(5), limit: Duration::from_secs(30), finish: Duration::from_secs(5) }, &mut |_| false)
            .await
            .unwrap_err();
        assert!(matches!(&e, RunError::Failed { stderr, .. } if stderr.contains("has been modified")), "{e}");
    });
}

#[test]
fn a_receiver_that_never_finishes_is_bounded() {
    let m = marker();
    common::rt().block_on(async {
        let send = Cmd::new("true");
        let recv = Cmd::new("sh").args(["-c", &format!("cat >/dev/null; sleep 300 # {m}")]);
        let e = runner()
            .pipe(
                PipeSpec {
                    send: &send,
                    recv: &recv,
                    stall: Duration::from_secs(5),
                    limit: Duration::from_secs(30),
                    finish: Duration::from_secs(1),
                },
                &mut |_| true,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
    });
    assert_nothing_left(&m);
}

#[test]
fn shell_quoting_round_trips_through_a_real_shell() {
    let words = [
        "a b",
        "it's",
        "$(echo x)",
        "`id`",
        "\\",
        "\"",
        "*",
        "~",
        "\n",
        "-e",
        "",
        "é€",
    ];
    let cmd = Cmd::new("printf").arg("[%s]").args(words);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd.to_shell())
        .output()
        .unwrap();
    let want: String = words.iter().map(|w| format!("[{w}]")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

/// `zfs send -t`'s dump of the token it resumes is left out of an error;
/// the error line after it is kept.
#[test]
fn a_resume_token_dump_is_not_the_error() {
    let stderr = "resume token contents:\nnvlist version: 0\n\tfromguid = 0x9e875814f3b564fb\n\tobject = 0x3\n\toffset = 0x4e0000\n\tbytes = 0x503aa8\n\ttoguid = 0x1f\n\ttoname = zpool1/a@manual-11\n\tembedok\n\tcompressok\ncannot resume send: 'zpool1/a@manual-4' used in the initial send no longer exists\n";
    assert_eq!(
        zfs_nfs_replica::runner::stderr_head(stderr),
        "cannot resume send: 'zpool1/a@manual-4' used in the initial send no longer exists"
    );
}
