//! Every input a real node hands the binary: broken and hostile files at
//! the paths it reads, a closed stdout, absurd settings, signals. Each gets
//! one clear line and a documented exit code; nothing panics (exit 101),
//! nothing hangs, nothing refused is changed on disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pve::{FakePve, Fault};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
}

/// Run with a deadline: a hang fails the test instead of stalling it.
fn run_bounded(mut c: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        p.display()
    );
}

/// A node whose API says it is master (pve1), with its files in `dir`.
struct Node {
    dir: tempfile::TempDir,
    pve: FakePve,
}

impl Node {
    fn new() -> Node {
        let pve = FakePve::start(&[("pve1", "127.0.0.1"), ("pve2", "127.0.0.1")], 103);
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tok");
        std::fs::write(&tok, &pve.token).unwrap();
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join("sanoid.conf"),
            "[zpool1]\n\tautosnap = yes\n",
        )
        .unwrap();
        Node { dir, pve }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config, with `extra` added before the pool (and `replace`d).
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[cluster]\nguest = 103\nnode = \"pve1\"\nnodes = {{ pve1 = \"127.0.0.1\", pve2 = \"127.0.0.1\" }}\n\
             [ssh]\nport = 9\nconnect_timeout = \"1s\"\n\
             [paths]\nrun_dir = \"{run}\"\nstate_dir = \"{state}\"\n\
             [proxmox]\nurl = \"{url}\"\ntoken_file = \"{tok}\"\nca_file = \"{ca}\"\nvmlist = \"/nonexistent\"\ntimeout = \"30s\"\n\
             [checks]\ninterval = \"10ms\"\n[sanoid]\nconfig = \"{sanoid}\"\n{extra}\n[[pool]]\nname = \"zpool1\"\n",
            run = self.p("run").display(),
            state = self.p("state").display(),
            url = self.pve.url("pve1"),
            tok = self.p("tok").display(),
            ca = self.pve.ca_file.path().display(),
            sanoid = self.p("sanoid.conf").display(),
        );
        let c = self.p("config.toml");
        std::fs::write(&c, text).unwrap();
        c
    }

    fn cmd(&self, cfg: &Path, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--config").arg(cfg).args(args);
        c
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn no_panic(o: &Output) {
    assert_ne!(o.status.code(), Some(101), "panicked: {}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
}

#[test]
fn absurd_durations_are_config_errors_not_panics() {
    let n = Node::new();
    for (from, to) in [
        ("timeout = \"30s\"", "timeout = \"9999999999999999999s\""),
        (
            "connect_timeout = \"1s\"",
            "connect_timeout = \"9999999999999999999s\"",
        ),
        (
            "interval = \"10ms\"",
            "interval = \"18446744073709551615ms\"",
        ),
    ] {
        let cfg = n.config("");
        let t = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, t.replace(from, to)).unwrap();
        let (o, _) = run_bounded(n.cmd(&cfg, &["run", "--dry-run"]), Duration::from_secs(20));
        no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{to}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("longer than a year"),
            "{to}: {}",
            text(&o.stderr)
        );
    }
}

#[test]
fn relative_or_empty_state_and_run_dirs_are_refused() {
    let n = Node::new();
    for (key, v) in [
        ("state_dir", ""),
        ("state_dir", "state"),
        ("run_dir", "./run"),
    ] {
        let cfg = n.config("");
        let t = std::fs::read_to_string(&cfg).unwrap();
        let t: String = t
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} = ")) {
                    format!("{key} = \"{v}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&cfg, t).unwrap();
        let (o, _) = run_bounded(
            {
                let mut c = n.cmd(&cfg, &["run"]);
                c.current_dir(n.dir.path());
                c
            },
            Duration::from_secs(20),
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "{key} = {v:?}: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stderr).contains(&format!("[paths] {key}"))
                && text(&o.stderr).contains("absolute"),
            "{}",
            text(&o.stderr)
        );
        assert!(!n.p("status.json").exists() && !n.p("role.json").exists());
    }
}

#[test]
fn config_errors_name_the_line_even_after_parsing() {
    let n = Node::new();
    let cfg = n.config("");
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, t.replace("node = \"pve1\"", "node = \"pve9\"")).unwrap();
    let (o, _) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains(&format!("{}:3: [cluster] node `pve9`", cfg.display())),
        "{}",
        text(&o.stderr)
    );
    // A second [[pool]] of the same name: the line of its name.
    std::fs::write(&cfg, format!("{t}[[pool]]\nname = \"zpool1\"\n")).unwrap();
    let (o, _) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(20));
    let last = std::fs::read_to_string(&cfg).unwrap().lines().count();
    assert!(
        text(&o.stderr).contains(&format!(
            ":{last}: [[pool]] name `zpool1` is configured twice"
        )),
        "{}",
        text(&o.stderr)
    );
    // An unknown table is at the top level, not in the table before it.
    std::fs::write(&cfg, format!("{t}[bogus]\nx = 1\n")).unwrap();
    let (o, _) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(20));
    let e = text(&o.stderr);
    assert!(
        e.contains("unknown field `bogus`") && !e.contains("in [pool]"),
        "{e}"
    );
    // A user or an address that ssh would read as more than one word.
    for (from, to) in [
        ("[ssh]\n", "[ssh]\nuser = \"root; rm -rf /\"\n"),
        (
            "pve2 = \"127.0.0.1\"",
            "pve2 = \"10.0.0.2 -oProxyCommand=x\"",
        ),
        ("pve2 = \"127.0.0.1\"", "pve2 = \"host;reboot\""),
    ] {
        std::fs::write(&cfg, t.replace(from, to)).unwrap();
        let (o, _) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(2), "{to}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("config error"),
            "{}",
            text(&o.stderr)
        );
    }
}

#[test]
fn fifos_at_the_paths_it_reads_are_errors_not_hangs() {
    // sanoid.conf: the master refuses the run, the FIFO is left as it was.
    let n = Node::new();
    let cfg = n.config("");
    std::fs::remove_file(n.p("sanoid.conf")).unwrap();
    mkfifo(&n.p("sanoid.conf"));
    let (o, took) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(30));
    no_panic(&o);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("not a regular file (a FIFO)"),
        "{}",
        text(&o.stderr)
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    // status.json: `status` says UNKNOWN at once.
    std::fs::create_dir_all(n.p("state")).unwrap();
    let _ = std::fs::remove_file(n.p("state/status.json"));
    mkfifo(&n.p("state/status.json"));
    let (o, _) = run_bounded(n.cmd(&cfg, &["status", "--check"]), Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).starts_with("ZFS-NFS-REPLICA UNKNOWN - "),
        "{}",
        text(&o.stdout)
    );
    // The config itself.
    let fifo_cfg = n.p("fifo.toml");
    mkfifo(&fifo_cfg);
    let (o, _) = run_bounded(n.cmd(&fifo_cfg, &["run"]), Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("not a regular file"),
        "{}",
        text(&o.stderr)
    );
    // The token file: nobody is surely master, refused.
    let n = Node::new();
    let cfg = n.config("");
    std::fs::remove_file(n.p("tok")).unwrap();
    mkfifo(&n.p("tok"));
    let (o, _) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(20));
    no_panic(&o);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
}

#[test]
fn a_fifo_as_the_size_history_refuses_the_pool() {
    let n = Node::new();
    let cfg = n.config("");
    std::fs::create_dir_all(n.p("state/history")).unwrap();
    mkfifo(&n.p("state/history/zpool1.json"));
    let (o, took) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(40));
    no_panic(&o);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{e}");
    assert!(
        e.contains("zpool1.json: not a regular file (a FIFO)"),
        "{e}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// stdout a pipe nobody reads: every write fails with EPIPE.
fn closed_stdout(mut c: Command) -> Output {
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn status_with_its_stdout_closed_ends_quietly() {
    let n = Node::new();
    let cfg = n.config("");
    // A real status file first: a run that is refused (sanoid.conf broken)
    // records one.
    std::fs::write(n.p("sanoid.conf"), "garbage\n").unwrap();
    let (o, _) = run_bounded(n.cmd(&cfg, &["run"]), Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(n.p("state/status.json").exists());
    for (args, want) in [
        (&["status"][..], Some(0)),
        (&["status", "--json"], Some(0)),
        (&["status", "--check"], Some(2)),
    ] {
        let o = closed_stdout(n.cmd(&cfg, args));
        no_panic(&o);
        assert_eq!(o.status.code(), want, "{args:?}: {}", text(&o.stderr));
    }
}

#[test]
fn status_check_says_unknown_in_one_line_whatever_prevents_it() {
    let n = Node::new();
    let cfg = n.config("");
    for args in [
        vec![
            "--config".to_string(),
            "/nonexistent.toml".into(),
            "status".into(),
            "--check".into(),
        ],
        vec![
            "--config".to_string(),
            cfg.display().to_string(),
            "status".into(),
            "--check".into(),
            "--bogus".into(),
        ],
        vec![
            "--config".to_string(),
            cfg.display().to_string(),
            "status".into(),
            "--check".into(),
            "--warn-lag".into(),
            "soon".into(),
        ],
    ] {
        let (o, _) = run_bounded(
            {
                let mut c = bin();
                c.args(&args);
                c
            },
            Duration::from_secs(10),
        );
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        let out = text(&o.stdout);
        assert_eq!(out.lines().count(), 1, "{args:?}: {out}");
        assert!(
            out.starts_with("ZFS-NFS-REPLICA UNKNOWN - "),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn sigterm_ends_a_run_within_its_grace() {
    let n = Node::new();
    let cfg = n.config("[timeouts]\nkill_grace = \"1s\"\n");
    n.pve.set(|s| s.fault = Fault::Hang);
    let mut c = n.cmd(&cfg, &["run"]);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The master check hangs (30s API timeout); stop it after a moment.
    std::thread::sleep(Duration::from_millis(800));
    let sent = Instant::now();
    // SAFETY: a plain kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(6),
            "not stopped within kill_grace + 5s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("interrupted by SIGTERM"),
        "{}",
        text(&o.stderr)
    );
}
