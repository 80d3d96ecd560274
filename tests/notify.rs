//! Notification delivery against a real HTTP server on loopback, for each
//! kind (ntfy, Gotify, webhook in its three shapes, healthchecks pings, a
//! command), a server that answers 500 and one that hangs; then the binary
//! end to end: a failing run notifies once, not every run, and a
//! healthchecks target hears every run's start and end.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::http::Recorder;
use zfs_nfs_replica::config;
use zfs_nfs_replica::health::Level;
use zfs_nfs_replica::notify::{Message, Ping, Sender, deliver};
use zfs_nfs_replica::runner::SystemRunner;

const BASE: &str = "[cluster]\nguest = 103\nnodes = { pve1 = \"10.0.0.1\", pve2 = \"10.0.0.2\" }\n";

fn msg(level: Level) -> Message {
    Message {
        node: "pve1".into(),
        level,
        title: "zfs-nfs-replica pve1: CRITICAL (master, refused)".into(),
        body: "zpool1/a -> pve2: diverged after @s1".into(),
        reasons: vec!["zpool1/a -> pve2: diverged after @s1".into()],
        time: "2026-11-22T12:00:00Z".into(),
    }
}

fn notify_cfg(dir: &std::path::Path, targets: &str) -> config::Notify {
    let text = format!(
        "{BASE}[notify]\ntimeout = \"2s\"\nca_file = \"{}/no-ca.pem\"\n{targets}\n[[pool]]\nname = \"zpool1\"\n",
        dir.display()
    );
    config::parse_str(&text, "notify.toml").unwrap().notify
}

fn secret_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

#[test]
fn each_kind_reaches_a_real_http_server() {
    let srv = Recorder::start();
    let d = tempfile::tempdir().unwrap();
    let ntfy_tok = secret_file(d.path(), "ntfy-token", "tk_NTFYSECRET");
    let gotify_tok = secret_file(d.path(), "gotify-token", "AGOTIFYSECRET");
    let hook_url = secret_file(d.path(), "hook-url", &srv.url("/api/webhooks/1/HOOKSECRET"));
    let out = d.path().join("command-out");
    let cfg = notify_cfg(
        d.path(),
        &format!(
            "[[notify.target]]\nkind = \"ntfy\"\nurl = \"{}\"\ntoken_file = \"{ntfy_tok}\"\n\
             [[notify.target]]\nkind = \"gotify\"\nurl = \"{}\"\ntoken_file = \"{gotify_tok}\"\n\
             [[notify.target]]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[notify.target]]\nkind = \"webhook\"\nurl_file = \"{hook_url}\"\nformat = \"discord\"\n\
             [[notify.target]]\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"slack\"\n\
             [[notify.target]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"printf '%s|%s|%s' \\\"$0\\\" \\\"$1\\\" \\\"$2\\\" > {}\", \"{{status}}\", \"{{title}}\", \"{{node}}\"]\n",
            srv.url("/zfs-topic"),
            srv.url("/"),
            srv.url("/generic"),
            srv.url("/slack"),
            out.display()
        ),
    );
    let runner = SystemRunner::default();
    let sender = Sender::new(&cfg, &runner).unwrap();
    let rt = common::rt();
    let n = rt.block_on(deliver(&sender, &cfg.targets, &msg(Level::Fail)));
    assert_eq!(n, 6, "every target took it");
    let reqs = srv.taken();
    let by = |path: &str| {
        reqs.iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no request to {path}: {reqs:?}"))
    };
    let ntfy = by("/zfs-topic");
    assert_eq!(ntfy.method, "POST");
    assert_eq!(
        ntfy.header("title"),
        Some("zfs-nfs-replica pve1: CRITICAL (master, refused)")
    );
    assert_eq!(ntfy.header("priority"), Some("5"));
    assert_eq!(ntfy.header("authorization"), Some("Bearer tk_NTFYSECRET"));
    assert_eq!(ntfy.body, "zpool1/a -> pve2: diverged after @s1");
    let gotify = by("/message");
    assert_eq!(gotify.header("x-gotify-key"), Some("AGOTIFYSECRET"));
    let g: serde_json::Value = serde_json::from_str(&gotify.body).unwrap();
    assert_eq!(
        (g["priority"].as_i64(), g["title"].as_str()),
        (Some(8), Some(msg(Level::Fail).title.as_str()))
    );
    let j: serde_json::Value = serde_json::from_str(&by("/generic").body).unwrap();
    assert_eq!(j["status"], "critical");
    assert_eq!(j["node"], "pve1");
    assert_eq!(j["reasons"][0], "zpool1/a -> pve2: diverged after @s1");
    assert_eq!(
        by("/generic").header("content-type"),
        Some("application/json")
    );
    let discord: serde_json::Value =
        serde_json::from_str(&by("/api/webhooks/1/HOOKSECRET").body).unwrap();
    assert!(
        discord["content"]
            .as_str()
            .unwrap()
            .starts_with("**zfs-nfs-replica pve1: CRITICAL")
    );
    let slack: serde_json::Value = serde_json::from_str(&by("/slack").body).unwrap();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("*zfs-nfs-replica pve1")
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "CRITICAL|zfs-nfs-replica pve1: CRITICAL (master, refused)|pve1"
    );

    // healthchecks: start, success and fail pings, with the text as body.
    let hc = notify_cfg(
        d.path(),
        &format!(
            "[[notify.target]]\nkind = \"healthchecks\"\nurl = \"{}\"\n",
            srv.url("/ping/uuid-1/{node}")
        ),
    );
    let sender = Sender::new(&hc, &runner).unwrap();
    let t = &hc.targets[0];
    rt.block_on(async {
        sender.ping(t, Ping::Start, "", "pve1").await.unwrap();
        sender.send(t, &msg(Level::Ok)).await.unwrap();
        sender.send(t, &msg(Level::Fail)).await.unwrap();
    });
    let paths: Vec<String> = srv.taken().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        // `{node}`: one check per node (msg() is pve1's).
        [
            "/ping/uuid-1/pve1/start",
            "/ping/uuid-1/pve1",
            "/ping/uuid-1/pve1/fail"
        ]
    );
}

#[test]
fn a_failing_or_hanging_server_is_reported_and_bounded() {
    let srv = Recorder::start();
    let d = tempfile::tempdir().unwrap();
    let cfg = notify_cfg(
        d.path(),
        &format!(
            "[[notify.target]]\nkind = \"webhook\"\nurl = \"{}\"\n[[notify.target]]\nkind = \"ntfy\"\nurl = \"{}\"\n\
             [[notify.target]]\nkind = \"ntfy\"\nurl = \"https://127.0.0.1:{}/tls\"\n",
            srv.url("/status/500/TOKEN500"),
            srv.url("/hang/TOKENHANG"),
            srv.port
        ),
    );
    let runner = SystemRunner::default();
    let sender = Sender::new(&cfg, &runner).unwrap();
    let rt = common::rt();
    let e = rt
        .block_on(sender.send(&cfg.targets[0], &msg(Level::Fail)))
        .unwrap_err();
    assert_eq!(e, "HTTP 500");
    let started = Instant::now();
    let e = rt
        .block_on(sender.send(&cfg.targets[1], &msg(Level::Fail)))
        .unwrap_err();
    assert_eq!(e, "no answer within 2s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by [notify] timeout"
    );
    assert!(!e.contains("TOKEN"), "{e}");
    // HTTPS without a usable CA file says so, and sends nothing.
    let e = rt
        .block_on(sender.send(&cfg.targets[2], &msg(Level::Fail)))
        .unwrap_err();
    assert!(
        e.contains("[notify] ca_file") && e.contains("no-ca.pem"),
        "{e}"
    );
    assert_eq!(
        rt.block_on(deliver(&sender, &cfg.targets, &msg(Level::Fail))),
        0,
        "none delivered, and no panic"
    );
}

#[test]
fn bad_notify_config_is_one_line_naming_the_target() {
    for (targets, want) in [
        (
            "[[notify.target]]\nkind = \"gotify\"\nurl = \"https://g/\"\n",
            "#1 (Gotify): token_file (the app token) is required",
        ),
        (
            "[[notify.target]]\nkind = \"ntfy\"\n",
            "url (or url_file) is required",
        ),
        (
            "[[notify.target]]\nkind = \"command\"\n",
            "command = [\"program\"",
        ),
        (
            "[[notify.target]]\nkind = \"ntfy\"\nurl = \"ftp://x\"\n",
            "must start with https://",
        ),
        (
            "[[notify.target]]\nkind = \"ntfy\"\nurl = \"https://x\"\nformat = \"slack\"\n",
            "format is for kind = \"webhook\" only",
        ),
        (
            "[[notify.target]]\nkind = \"pager\"\n",
            "unknown variant `pager`",
        ),
    ] {
        let text = format!("{BASE}[notify]\n{targets}[[pool]]\nname = \"zpool1\"\n");
        let e = config::parse_str(&text, "n.toml").unwrap_err().to_string();
        assert!(e.contains(want), "{targets}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

/// The binary: a master whose peer is unreachable fails every run (exit 3).
/// The first failure is notified, the second identical one is not; the
/// healthchecks target hears every run's start and fail; URLs and tokens
/// never reach the logs.
#[test]
fn a_run_notifies_on_change_only_and_pings_every_run() {
    let srv = Recorder::start();
    let pve = common::pve::FakePve::start(&[("pve1", "10.0.0.1"), ("pve2", "10.0.0.2")], 103);
    let d = tempfile::tempdir().unwrap();
    let tok = secret_file(d.path(), "pve-token", &pve.token);
    let vmlist = d.path().join("vmlist");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let cfg = format!(
        "[cluster]\nguest = 103\nnode = \"pve1\"\nnodes = {{ pve1 = \"127.0.0.1\", pve2 = \"127.0.0.1\" }}\n\
         [ssh]\nport = {dead_port}\nconnect_timeout = \"1s\"\n\
         [proxmox]\nurl = \"{}\"\ntoken_file = \"{tok}\"\nca_file = \"{}\"\nvmlist = \"{}\"\n\
         [checks]\ncount = 1\n[sanoid]\ndatasets = []\n\
         [paths]\nrun_dir = \"{dir}/run\"\nstate_dir = \"{dir}/state\"\n\
         [status]\nprometheus_textfile = \"{dir}/prom/zfs_nfs_replica.prom\"\n\
         [notify]\ntimeout = \"2s\"\n\
         [[notify.target]]\nkind = \"ntfy\"\nurl = \"{ntfy}\"\n\
         [[notify.target]]\nkind = \"healthchecks\"\nurl = \"{hc}\"\n\
         [[pool]]\nname = \"zpool1\"\n",
        pve.url("pve1"),
        pve.ca_file.path().display(),
        vmlist.display(),
        dir = d.path().display(),
        ntfy = srv.url("/topic-SECRET1"),
        hc = srv.url("/hc/uuid-SECRET2/zfs-{node}"),
    );
    let cfg_path = d.path().join("config.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::create_dir(d.path().join("prom")).unwrap();
    let run = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
            .arg("-c")
            .arg(&cfg_path)
            .arg("run")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run();
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("notified ntfy (127.0.0.1)"), "{err}");
    assert!(!err.contains("SECRET"), "a URL leaked into the log: {err}");
    let first = srv.taken();
    let paths: Vec<&str> = first.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/hc/uuid-SECRET2/zfs-pve1/start",
            "/hc/uuid-SECRET2/zfs-pve1/fail",
            "/topic-SECRET1"
        ]
    );
    // (This host has no `zpool`: the pool health is unknown, hence CRITICAL.)
    let ntfy = &first[2];
    assert!(
        ntfy.header("title")
            .unwrap()
            .starts_with("zfs-nfs-replica pve1: CRITICAL (master, transient-failure)"),
        "{ntfy:?}"
    );
    assert!(ntfy.body.contains("zpool1 -> pve2"), "{}", ntfy.body);

    let (code, err) = run();
    assert_eq!(code, Some(3), "{err}");
    let paths: Vec<String> = srv.taken().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/hc/uuid-SECRET2/zfs-pve1/start",
            "/hc/uuid-SECRET2/zfs-pve1/fail"
        ],
        "the same failure again is not notified again within repeat_after"
    );
    // The status and the metrics recorded it.
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("state/status.json")).unwrap())
            .unwrap();
    assert_eq!(st["last_run"]["consecutive_failures"], 2);
    assert_eq!(st["pools"][0]["outcome"], "transient-failure");
    let prom = std::fs::read_to_string(d.path().join("prom/zfs_nfs_replica.prom")).unwrap();
    assert!(
        prom.contains("zfs_nfs_replica_last_run_exit_code{node=\"pve1\"} 3\n"),
        "{prom}"
    );
    assert!(
        prom.contains("zfs_nfs_replica_consecutive_failures{node=\"pve1\"} 2\n"),
        "{prom}"
    );
}
