//! Scenarios on real OpenZFS: two qemu nodes (tests/lab/), each with its own
//! kernel and pools `zpool1`/`zpool2`, the tool run inside the nodes exactly
//! as the systemd unit runs it. Assertions are on real ZFS state: snapshot
//! guids on both sides, file checksums, holds, readonly, resume tokens.
//!
//! Who is master comes from the real detection path: each node asks its own
//! Proxmox API stand-in (https://10.0.2.100:8006, verified TLS, token file)
//! and reads its `/etc/pve/.vmlist`; scenarios move the guest with
//! `Lab::place_guest`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{Lab, NODES, wait_until};

const A: &str = "pve1";
const B: &str = "pve2";
/// What a non-root replication user needs on the standby's pools
/// (README: Least privilege, non-root), as `zfs allow -u USER <this> POOL`.
const NON_ROOT_PERMISSIONS: &str = "create,mount,receive,hold,release,readonly";

/// `--dry-run` changes nothing on either node: every property of every
/// dataset and snapshot, and every hold, is the same before and after.
fn dry_run_changes_nothing(lab: &Lab, node: &str, args: &str) -> String {
    changes_nothing(lab, node, &format!("run --dry-run {args}"))
}

/// `zfs-nfs-replica ARGS` (a dry run of some command) changes nothing on
/// either node: ZFS state, holds, and our files. Returns its stdout.
fn changes_nothing(lab: &Lab, node: &str, args: &str) -> String {
    let before = lab.on_each(|n| lab.zfs_state(n));
    let files = "find /run/zfs-nfs-replica /var/lib/zfs-nfs-replica -xdev -newer /etc/zfs-nfs-replica/config.toml 2>/dev/null; ls -l --time-style=+%s /run/zfs-nfs-replica 2>/dev/null | grep -v ' ssh-'; true";
    let files_before = lab.ok(node, files);
    let out = lab.replica(node, args);
    assert!(
        matches!(out.code, Some(0..=4)),
        "dry-run crashed: {}",
        out.all()
    );
    let after = lab.on_each(|n| lab.zfs_state(n));
    for (i, n) in NODES.iter().enumerate() {
        assert_eq!(
            before[i],
            after[i],
            "dry-run changed ZFS state on {n}:\n{}",
            out.all()
        );
    }
    assert_eq!(
        lab.ok(node, files),
        files_before,
        "dry-run created or changed files"
    );
    out.stdout
}

fn sha(lab: &Lab, node: &str, files: &str) -> String {
    lab.ok(node, &format!("cd / && sha256sum {files}"))
}

/// Mount the standby's copy read-only for a moment, checksum, unmount.
fn standby_sha(lab: &Lab, dataset: &str, files: &str) -> String {
    lab.ok(B, &format!("zfs mount '{dataset}' 2>/dev/null; cd / && sha256sum {files}; rc=$?; zfs unmount '{dataset}'; exit $rc"))
}

fn all_snapshot_guids(lab: &Lab, node: &str, pool: &str) -> Vec<String> {
    let mut v: Vec<String> = lab
        .ok(
            node,
            &format!("zfs list -H -p -t snapshot -o name,guid -r {pool}"),
        )
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// [`all_snapshot_guids`] without what `resolve` set aside.
fn live_snapshot_guids(lab: &Lab, node: &str, pool: &str) -> Vec<String> {
    all_snapshot_guids(lab, node, pool)
        .into_iter()
        .filter(|l| !l.contains("zfs-nfs-replica-quarantine"))
        .collect()
}

fn holds(lab: &Lab, node: &str) -> String {
    lab.ok(node, common::lab::ALL_HOLDS)
}

fn setup(lab: &Lab) {
    lab.fresh_pools();
    lab.place_guest(A);
    lab.configure(A, "[timeouts]\nstall = \"10s\"\nkill_grace = \"2s\"\n");
    lab.configure(B, "[timeouts]\nstall = \"10s\"\nkill_grace = \"2s\"\n");
}

/// Initial state on A: nested datasets (one with a space in its name), a
/// zvol with data, two recursive snapshots.
fn populate(lab: &Lab) {
    lab.ok(
        A,
        "set -e
         zfs create zpool1/a; zfs create zpool1/a/b; zfs create 'zpool1/a/b c'
         zfs create -V 16M zpool1/vol
         dd if=/dev/urandom of=/zpool1/a/f bs=1M count=2 status=none
         dd if=/dev/urandom of=/zpool1/a/b/g bs=1M count=1 status=none
         dd if=/dev/urandom of='/zpool1/a/b c/h' bs=1M count=1 status=none
         dd if=/dev/urandom of=/dev/zd0 bs=1M count=2 status=none
         zfs snapshot -r zpool1@s1
         dd if=/dev/urandom of=/zpool1/a/f2 bs=1M count=1 status=none
         zfs snapshot -r zpool1@s2",
    );
}

fn initial_sync(lab: &Lab) {
    populate(lab);
    let out = lab.replica(A, "run --overwrite-empty-target");
    assert_eq!(out.code, Some(0), "{}", out.all());
}

/// [`setup`], then [`initial_sync`]: made for real the first time on each
/// lab, then brought back from the copy kept of it (pools, mounts, the
/// tool's config and state on both nodes: see `Lab::save`).
fn synced(lab: &Lab) {
    if lab.restore("synced") {
        lab.place_guest(A);
        return;
    }
    setup(lab);
    initial_sync(lab);
    lab.save("synced");
}

#[test]
fn lab_initial_full_sync_of_nested_datasets_and_a_zvol() {
    let lab = Lab::get();
    setup(&lab);
    populate(&lab);
    // Without the explicit flag the existing (empty) root is not overwritten.
    let plan = dry_run_changes_nothing(&lab, A, "");
    assert!(plan.contains("receiver-exists-empty"), "{plan}");
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        lab.ok(B, "zfs list -H -t snapshot -r zpool1").is_empty(),
        "nothing was sent"
    );

    let plan = dry_run_changes_nothing(&lab, A, "--overwrite-empty-target");
    assert!(
        plan.contains("DESTRUCTIVE"),
        "the -F step is flagged: {plan}"
    );
    let out = lab.replica(A, "run --overwrite-empty-target");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stderr.contains("<6>"),
        "journald priority prefixes under systemd: {}",
        out.stderr
    );

    assert_eq!(
        all_snapshot_guids(&lab, A, "zpool1"),
        all_snapshot_guids(&lab, B, "zpool1")
    );
    assert_eq!(
        all_snapshot_guids(&lab, B, "zpool1").len(),
        10,
        "5 datasets x 2 snapshots"
    );
    let ro = lab.ok(
        B,
        "zfs get -H -o name,value readonly -r -t filesystem,volume zpool1",
    );
    assert!(
        ro.lines().all(|l| l.ends_with("\ton")),
        "standby copies are read-only:\n{ro}"
    );
    let files = "zpool1/a/f zpool1/a/f2 zpool1/a/b/g 'zpool1/a/b c/h'";
    assert_eq!(sha(&lab, A, files), lab.ok(B, &format!(
        "for d in zpool1/a zpool1/a/b 'zpool1/a/b c'; do zfs mount \"$d\"; done; cd / && sha256sum {files}; \
         for d in 'zpool1/a/b c' zpool1/a/b zpool1/a; do zfs unmount \"$d\"; done")));
    assert_eq!(
        lab.ok(A, "head -c 16777216 /dev/zd0 | sha256sum"),
        lab.ok(B, "head -c 16777216 /dev/zd0 | sha256sum"),
        "zvol contents"
    );
    let h = holds(&lab, A);
    assert_eq!(h.lines().count(), 5, "{h}");
    assert!(
        h.lines().all(|l| l.ends_with("@s2\tzfs-nfs-replica:pve2")),
        "{h}"
    );
    assert!(
        holds(&lab, B)
            .lines()
            .all(|l| l.ends_with("@s2\tzfs-nfs-replica:pve1"))
    );

    // In sync: the next run has nothing to do.
    let again = lab.replica(A, "run");
    assert_eq!(again.code, Some(1), "{}", again.all());
}

#[test]
fn lab_incrementals_with_intermediates_and_a_child_added_later() {
    let lab = Lab::get();
    synced(&lab);
    lab.on_each(|n| {
        lab.ok(n, "mkdir -p /var/lib/prometheus/node-exporter");
    });
    lab.ok(
        A,
        "set -e
         echo three > /zpool1/a/three; zfs snapshot -r zpool1@s3
         echo four > /zpool1/a/four; zfs snapshot -r zpool1@s4
         zfs create zpool1/a/later; echo later > /zpool1/a/later/x; zfs snapshot -r zpool1@s5",
    );
    let plan = dry_run_changes_nothing(&lab, A, "");
    assert!(
        plan.contains("incremental @s2 -> @s5 (3 snapshot(s))"),
        "{plan}"
    );
    assert!(
        plan.contains("zpool1/a/later") && plan.contains("full send of @s5"),
        "{plan}"
    );
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(
        all_snapshot_guids(&lab, A, "zpool1"),
        all_snapshot_guids(&lab, B, "zpool1"),
        "every intermediate snapshot arrived"
    );
    assert_eq!(
        standby_sha(&lab, "zpool1/a/later", "zpool1/a/later/x"),
        sha(&lab, A, "zpool1/a/later/x")
    );
    let h = holds(&lab, A);
    assert!(
        h.lines().all(|l| l.contains("@s5\t")),
        "only the new base is held:\n{h}"
    );
    assert_eq!(h.lines().count(), 6);
    status_as_dashboards_read_it(&lab);
}

/// What the runs recorded, checked field by field: `status --json`, the
/// table, `--check`, and the node_exporter textfile, on the master (after
/// the incremental run) and on the standby.
fn status_as_dashboards_read_it(lab: &Lab) {
    let json = |node: &str| -> serde_json::Value {
        serde_json::from_str(&lab.ok(node, "zfs-nfs-replica status --json")).unwrap()
    };
    let st = json(A);
    assert_eq!(st["schema_version"], 1);
    assert_eq!(st["status"], "ok", "{st:#}");
    assert_eq!(st["node"], "pve1");
    assert_eq!(st["role"]["role"], "master");
    assert_eq!(st["last_run"]["exit_code"], 0);
    assert_eq!(st["last_run"]["result"], "replicated");
    assert_eq!(st["last_run"]["consecutive_failures"], 0);
    let pool = &st["pools"][0];
    assert_eq!(
        (&pool["pool"], &pool["peer"], &pool["outcome"]),
        (&"zpool1".into(), &"pve2".into(), &"replicated".into())
    );
    assert!(pool["bytes_sent"].as_u64().unwrap() > 0);
    let later = pool["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "zpool1/a/later")
        .expect("zpool1/a/later in the status");
    assert_eq!(later["result"], "sent");
    assert_eq!(later["replicated"]["name"], "s5");
    assert_eq!(
        later["replicated"]["guid"].as_u64().unwrap().to_string(),
        lab.guid(B, "zpool1/a/later@s5"),
        "the held base, by guid, as the standby has it"
    );
    assert_eq!(later["newest_peer"]["name"], "s5");
    assert!(later["lag_seconds"].as_i64().unwrap() < 600);
    assert_eq!(st["health"][0]["pool"], "zpool1");
    assert_eq!(st["health"][0]["state"], "ONLINE");
    let table = lab.ok(A, "zfs-nfs-replica status");
    for want in [
        "node pve1: master",
        "status: OK",
        "pool zpool1 -> pve2:zpool1  replicated",
        "zpool1/a/later",
        "sent (@s5)",
    ] {
        assert!(table.contains(want), "{want}:\n{table}");
    }
    let check = lab.sh(A, "zfs-nfs-replica status --check");
    assert_eq!(check.code, Some(0), "{}", check.all());
    assert!(
        check
            .stdout
            .starts_with("ZFS-NFS-REPLICA OK - pve1 is master"),
        "{}",
        check.stdout
    );
    let prom = lab.ok(
        A,
        "cat /var/lib/prometheus/node-exporter/zfs_nfs_replica.prom",
    );
    let created = lab.ok(A, "zfs get -H -p -o value creation zpool1/a/later@s5");
    for want in [
        "zfs_nfs_replica_role{node=\"pve1\",role=\"master\"} 1".to_string(),
        "zfs_nfs_replica_last_run_exit_code{node=\"pve1\"} 0".into(),
        format!(
            "zfs_nfs_replica_pool_sent_bytes_total{{pool=\"zpool1\",peer=\"pve2\"}} {}",
            pool["bytes_sent_total"]
        ),
        "zfs_nfs_replica_status{node=\"pve1\"} 0".into(),
        format!(
            "zfs_nfs_replica_dataset_replicated_timestamp_seconds{{dataset=\"zpool1/a/later\",peer=\"pve2\"}} {}",
            created.trim()
        ),
        "zfs_nfs_replica_pool_health{pool=\"zpool1\",state=\"ONLINE\"} 0".into(),
        "zfs_nfs_replica_pool_conflicts{pool=\"zpool1\",peer=\"pve2\"} 0".into(),
    ] {
        assert!(prom.lines().any(|l| l == want), "{want}:\n{prom}");
    }
    // The standby: its role, and the newest snapshot it received.
    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    let sb = json(B);
    assert_eq!(sb["role"]["role"], "standby");
    assert_eq!(sb["role"]["master"], "pve1");
    // zpool2 holds no snapshot on the master either: nothing to receive yet.
    assert_eq!(sb["status"], "warn", "{sb:#}");
    assert_eq!(
        sb["reasons"],
        serde_json::json!(["zpool2: no snapshot received yet"])
    );
    assert_eq!(sb["received"][0]["pool"], "zpool1");
    assert_eq!(sb["received"][0]["snapshot"]["name"], "s5");
}

/// Start a run in the background on a node; its exit code lands in /tmp/run.rc.
fn start_background_run(lab: &Lab, node: &str) {
    lab.ok(node, "rm -f /tmp/run.rc /tmp/run.log; (JOURNAL_STREAM=8:1 /usr/bin/zfs-nfs-replica run > /tmp/run.log 2>&1; echo $? > /tmp/run.rc) > /dev/null 2>&1 &");
}

fn background_result(lab: &Lab, node: &str, limit: Duration) -> (i32, String) {
    assert!(
        wait_until(limit, || lab.sh(node, "test -f /tmp/run.rc").code
            == Some(0)),
        "background run did not finish in {limit:?}"
    );
    let code = lab.ok(node, "cat /tmp/run.rc").trim().parse().unwrap();
    (code, lab.ok(node, "cat /tmp/run.log"))
}

fn big_snapshot(lab: &Lab, mib: u32) {
    lab.ok(A, &format!("dd if=/dev/urandom of=/zpool1/a/big bs=1M count={mib} status=none && zfs snapshot -r zpool1@big"));
}

fn wait_for_send(lab: &Lab) {
    assert!(
        wait_until(Duration::from_secs(60), || lab
            .sh(A, "pgrep -f '[z]fs send.*zpool1/a@' >/dev/null")
            .code
            == Some(0)),
        "no zfs send started"
    );
}

#[test]
fn lab_a_transfer_killed_mid_stream_resumes_from_the_token() {
    let lab = Lab::get();
    synced(&lab);
    big_snapshot(&lab, 40);
    start_background_run(&lab, A);
    wait_for_send(&lab);
    std::thread::sleep(Duration::from_secs(2));
    lab.ok(A, "pkill -KILL -f '[z]fs send.*zpool1/a@'");
    let (code, log) = background_result(&lab, A, Duration::from_secs(60));
    assert_eq!(code, 3, "a killed transfer is transient: {log}");
    let token = lab
        .ok(B, "zfs get -H -o value receive_resume_token zpool1/a")
        .trim()
        .to_string();
    assert!(token.starts_with("1-"), "a resume token was kept: {token}");
    let plan = dry_run_changes_nothing(&lab, A, "");
    assert!(plan.contains("resume the interrupted receive"), "{plan}");
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stderr.contains("resume the interrupted receive"),
        "{}",
        out.stderr
    );
    assert_eq!(
        lab.ok(B, "zfs get -H -o value receive_resume_token zpool1/a")
            .trim(),
        "-"
    );
    assert_eq!(lab.guid(A, "zpool1/a@big"), lab.guid(B, "zpool1/a@big"));
    assert_eq!(
        standby_sha(&lab, "zpool1/a", "zpool1/a/big"),
        sha(&lab, A, "zpool1/a/big")
    );
}

/// The master fails while a stream flows: its standby keeps the partial
/// state of the interrupted receive (it counts in the pool's `used`). The
/// standby's promotion discards it (that stream can never complete there);
/// kept, it would make the pool-level size guard refuse the failback for
/// good, the old master's copy being smaller by what the partial state
/// holds (found by the life test, seed 12).
#[test]
fn lab_a_failover_mid_stream_discards_the_partial_receive_and_the_failback_converges() {
    let lab = Lab::get();
    synced(&lab);
    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    big_snapshot(&lab, 120);
    start_background_run(&lab, A);
    wait_for_send(&lab);
    let partial = || -> u64 {
        lab.sh(B, "zfs list -H -p -o used zpool1/a/%recv")
            .stdout
            .trim()
            .parse()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || partial() >= 24 << 20),
        "24 MiB of the stream arrived"
    );
    lab.ok(A, "pkill -KILL -f '[z]fs send.*zpool1/a@'");
    let (code, log) = background_result(&lab, A, Duration::from_secs(60));
    assert_eq!(code, 3, "{log}");
    let held = partial();
    let token = |n: &str| {
        lab.ok(n, "zfs get -H -o value receive_resume_token zpool1/a")
            .trim()
            .to_string()
    };
    assert!(token(B).starts_with("1-"), "{log}");
    // A fails; HA starts the guest on B, whose pre-start promotes it.
    lab.ok(A, "ip link set eth1 down");
    lab.place_guest(B);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    let hook = lab.replica(B, "hook 103 pre-start");
    lab.ok(A, "ip link set eth1 up");
    assert_eq!(hook.code, Some(0), "{}", hook.all());
    lab.pve.set(|s| s.guest_status = "running".into());
    let rec = lab.ok(B, "cat /var/lib/zfs-nfs-replica/last-promotion.json");
    assert!(
        rec.contains("\"promoted\": true") && rec.contains("zfs receive -A zpool1/a"),
        "{rec}\n{}",
        hook.all()
    );
    assert_eq!(token(B), "-", "{}", hook.all());
    assert_eq!(lab.sh(B, "zfs list zpool1/a/%recv").code, Some(1));
    eprintln!(
        "[lab] the promotion discarded {:.1} MiB of partial receive",
        held as f64 / (1 << 20) as f64
    );
    // A's link is back: its timer run makes it B's standby (read-only).
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    // B writes; A's @big is a divergence, set aside by resolve.
    lab.ok(
        B,
        "echo on-b > /zpool1/a/b/on-b && zfs snapshot -r zpool1@on-b",
    );
    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    let out = lab.replica(B, "diverged");
    assert!(
        out.stdout.contains("only on pve1 (receiver), newer: @big")
            && out.stdout.contains("resolve 'zpool1/a' --keep-divergent"),
        "{}",
        out.all()
    );
    let out = lab.replica(B, "resolve zpool1/a --keep-divergent");
    assert_eq!(out.code, Some(0), "{}", out.all());
    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    // The guest moves back to A by a planned migration: A's runs replicate
    // to B again, with no refusal and no flag.
    lab.place_guest(A);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    let hook = lab.replica(A, "hook 103 pre-start");
    assert_eq!(hook.code, Some(0), "{}", hook.all());
    lab.pve.set(|s| s.guest_status = "running".into());
    lab.ok(
        A,
        "echo back > /zpool1/a/back && zfs snapshot -r zpool1@back",
    );
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(!out.stderr.contains("size guard"), "{}", out.stderr);
    assert_eq!(
        live_snapshot_guids(&lab, A, "zpool1"),
        live_snapshot_guids(&lab, B, "zpool1"),
        "every live snapshot matches by guid"
    );
}

#[test]
fn lab_a_stalled_send_is_killed_and_nothing_is_left_running() {
    let lab = Lab::get();
    synced(&lab);
    big_snapshot(&lab, 40);
    start_background_run(&lab, A);
    wait_for_send(&lab);
    lab.ok(A, "pkill -STOP -f '[z]fs send.*zpool1/a@'");
    // stall = 10s, kill_grace = 2s.
    let (code, log) = background_result(&lab, A, Duration::from_secs(60));
    // Whether the receiver kept a partial state depends on how far the stream
    // got before the stop (none if no record arrived): the next run plans a
    // resume or a fresh incremental, and either way dry-run changes nothing.
    let plan = dry_run_changes_nothing(&lab, A, "--pool zpool1");
    assert!(
        plan.contains("zpool1/a                                 resume the interrupted receive")
            || plan.contains("zpool1/a                                 incremental @s2 -> @big"),
        "{plan}"
    );
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("no progress for 10s"), "{log}");
    assert!(
        wait_until(Duration::from_secs(10), || lab.sh(A, "pgrep -x zfs").code
            == Some(1)),
        "zfs left running on pve1"
    );
    assert!(
        wait_until(Duration::from_secs(20), || lab.sh(B, "pgrep -x zfs").code
            == Some(1)),
        "zfs receive left running on pve2"
    );
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "the next run recovers: {}", out.all());
    assert_eq!(lab.guid(A, "zpool1/a@big"), lab.guid(B, "zpool1/a@big"));

    // The receiver stopped instead: the sender stalls on a full pipe, and
    // the stopped `zfs receive` on the standby is ended too (it would hold
    // the partial state, and the next run's resume would fail on it).
    lab.ok(
        A,
        "dd if=/dev/urandom of=/zpool1/a/big2 bs=1M count=40 status=none && zfs snapshot -r zpool1@big2",
    );
    start_background_run(&lab, A);
    assert!(
        wait_until(Duration::from_secs(60), || lab
            .sh(B, "pgrep -f '^zfs receive .*zpool1/a$' >/dev/null")
            .code
            == Some(0)),
        "no zfs receive started on pve2"
    );
    lab.ok(B, "pkill -STOP -f '^zfs receive .*zpool1/a$'");
    let (code, log) = background_result(&lab, A, Duration::from_secs(90));
    assert_eq!(code, 3, "{log}");
    assert!(
        wait_until(Duration::from_secs(20), || lab.sh(B, "pgrep -x zfs").code
            == Some(1)),
        "the stopped zfs receive was left on pve2:\n{}\n{log}",
        lab.sh(B, "ps -eo pid,stat,args | grep [z]fs").stdout
    );
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "the next run resumes: {}", out.all());
    assert_eq!(lab.guid(A, "zpool1/a@big2"), lab.guid(B, "zpool1/a@big2"));
}

#[test]
fn lab_two_runs_at_once_the_second_skips_the_busy_pool() {
    let lab = Lab::get();
    synced(&lab);
    big_snapshot(&lab, 40);
    start_background_run(&lab, A);
    wait_for_send(&lab);
    let second = lab.replica(A, "run --pool zpool1");
    assert_eq!(second.code, Some(3), "{}", second.all());
    assert!(
        second.stderr.contains("pool zpool1 is busy"),
        "{}",
        second.stderr
    );
    let (code, log) = background_result(&lab, A, Duration::from_secs(120));
    assert_eq!(code, 0, "{log}");
    assert_eq!(lab.guid(A, "zpool1/a@big"), lab.guid(B, "zpool1/a@big"));
}

#[test]
fn lab_the_peers_sshd_stopped_is_a_clean_timeout() {
    let lab = Lab::get();
    synced(&lab);
    lab.ok(A, "echo x > /zpool1/a/x; zfs snapshot -r zpool1@s3");
    // Stop (SIGSTOP) B's listening sshd: connections are accepted by the
    // kernel but never answered. A timer continues it in case this test dies
    // before it does.
    lab.ok(
        B,
        "for p in $(pidof sshd); do [ \"$(cut -d' ' -f4 /proc/$p/stat)\" = 1 ] && l=$p; done; \
         kill -STOP $l && (nohup sh -c \"sleep 25; kill -CONT $l\" >/dev/null 2>&1 &)",
    );
    let started = std::time::Instant::now();
    let out = lab.replica(A, "run");
    let took = started.elapsed();
    // The harness reaches B over its already open connection.
    lab.ok(B, "pkill -CONT -x sshd");
    assert_eq!(out.code, Some(3), "{}", out.all());
    assert!(
        out.stderr
            .contains("ssh to pve2 (192.168.100.20): cannot connect"),
        "{}",
        out.stderr
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    // Nothing of ours is left on A.
    assert_eq!(
        lab.sh(A, "pgrep -f '[s]sh.*192.168.100.20'").code,
        Some(1),
        "an ssh client was left running"
    );
}

#[test]
fn lab_raw_send_of_an_encrypted_dataset() {
    let lab = Lab::get();
    setup(&lab);
    lab.ok(
        A,
        "set -e
         printf 'correct horse battery\\ncorrect horse battery\\n' | zfs create -o encryption=on -o keyformat=passphrase zpool2/secret
         echo classified > /zpool2/secret/doc; zfs snapshot zpool2/secret@e1
         echo more > /zpool2/secret/doc2; zfs snapshot zpool2/secret@e2",
    );
    let plan = dry_run_changes_nothing(&lab, A, "--pool zpool2");
    assert!(
        plan.contains("zfs send -L -c -e -P -v -w -p zpool2/secret@e1"),
        "{plan}"
    );
    let out = lab.replica(A, "run --pool zpool2");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stderr
            .contains("zfs send -L -c -e -P -v -w -p zpool2/secret@e1"),
        "{}",
        out.stderr
    );
    let props = lab.ok(B, "zfs get -H -o value encryption,keystatus zpool2/secret");
    assert_eq!(
        props, "aes-256-gcm\nunavailable\n",
        "received raw: still encrypted, no key on the standby"
    );
    assert_eq!(
        lab.guid(A, "zpool2/secret@e2"),
        lab.guid(B, "zpool2/secret@e2")
    );
    lab.ok(
        A,
        "echo even-more > /zpool2/secret/doc3; zfs snapshot zpool2/secret@e3",
    );
    let out = lab.replica(A, "run --pool zpool2");
    assert_eq!(out.code, Some(0), "raw incremental: {}", out.all());
    // With the key, the standby's copy reads back.
    let doc = lab.ok(B, "printf 'correct horse battery\\n' | zfs load-key zpool2/secret && zfs mount zpool2/secret && cat /zpool2/secret/doc3; zfs unmount zpool2/secret; zfs unload-key zpool2/secret");
    assert_eq!(doc, "even-more\n");
}

#[test]
fn lab_the_base_snapshot_survives_sanoid_pruning_on_the_master() {
    let lab = Lab::get();
    setup(&lab);
    lab.ok(
        A,
        "set -e
         zfs create zpool1/data; echo 1 > /zpool1/data/f
         zfs snapshot zpool1/data@autosnap_2026-11-20_10:00:00_hourly
         zfs snapshot zpool1/data@autosnap_2026-11-20_11:00:00_hourly
         zfs snapshot zpool1@autosnap_2026-11-20_11:00:00_hourly",
    );
    let out = lab.replica(A, "run --overwrite-empty-target --pool zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());
    // sanoid keeps no hourly snapshot: it prunes everything it may.
    lab.ok(
        A,
        "mkdir -p /etc/sanoid && cat > /etc/sanoid/sanoid.conf <<'EOF'
[zpool1/data]
	use_template = none
[template_none]
	frequently = 0
	hourly = 0
	daily = 0
	weekly = 0
	monthly = 0
	yearly = 0
	autosnap = no
	autoprune = yes
EOF
         sanoid --prune-snapshots --verbose > /tmp/sanoid.log 2>&1; true",
    );
    let snaps = lab.ok(A, "zfs list -H -o name -t snapshot zpool1/data");
    assert_eq!(
        snaps,
        "zpool1/data@autosnap_2026-11-20_11:00:00_hourly\n",
        "the held base survived, the rest was pruned: {}",
        lab.ok(A, "cat /tmp/sanoid.log")
    );
    lab.ok(
        A,
        "echo 2 > /zpool1/data/g; zfs snapshot zpool1/data@autosnap_2026-11-20_12:00:00_hourly",
    );
    dry_run_changes_nothing(&lab, A, "--pool zpool1");
    let out = lab.replica(A, "run --pool zpool1");
    assert_eq!(
        out.code,
        Some(0),
        "incremental from the held base: {}",
        out.all()
    );
    assert!(out.stderr.contains("incremental @autosnap_2026-11-20_11:00:00_hourly -> @autosnap_2026-11-20_12:00:00_hourly"), "{}", out.stderr);
}

/// A timer run between two full listings lists only names, guids and
/// createtxgs, and asks `zfs get` the rest of the few snapshots it needs:
/// it sends, moves the holds and records the status as a full listing
/// does. On OpenZFS 2.2+ it lists the datasets alone with
/// `snapshots_changed`, and the snapshots only of those whose value moved
/// or is not yet vouched for: a snapshot made or destroyed on either side
/// is listed, the others are kept. A hold of ours that a crash left on an
/// older snapshot is not seen by it; the next full listing finds and
/// releases it.
#[test]
fn lab_a_fast_listing_replicates_like_a_full_one_and_the_next_full_one_finds_a_leaked_hold() {
    let lab = Lab::get();
    synced(&lab);
    let fast = "-o name,guid,createtxg";
    let kept = lab
        .sh(A, "zfs get -H -p -o value snapshots_changed zpool1")
        .code
        == Some(0);
    let changes = "zfs list -H -p -t filesystem,volume -r -o name,guid,createtxg,origin,snapshots_changed zpool1 zpool2";
    let of = "zfs list -H -p -t snapshot -d 1 -o name,guid,createtxg";
    let run = |what: &str, code: i32| {
        let out = lab.replica(A, "-v run");
        assert_eq!(out.code, Some(code), "{what}: {}", out.all());
        out.stderr
    };
    // The datasets whose snapshots one side listed in a run (`-v`).
    let listed_of = |log: &str, side: &str| -> Vec<String> {
        let at = format!("command={side}{of} ");
        log.lines()
            .filter_map(|l| l.split_once(&at).map(|(_, rest)| rest.to_string()))
            .collect()
    };
    lab.ok(A, "echo three > /zpool1/a/three; zfs snapshot -r zpool1@s3");
    let log = run("fast", 0);
    let wanted = if kept {
        vec![
            changes.to_string(),
            format!("[pve2] {changes}"),
            format!("{of} zpool1 zpool1/a"),
            format!("[pve2] {of} zpool1 zpool1/a"),
        ]
    } else {
        vec![
            format!("zfs list -H -p -t filesystem,volume,snapshot -r {fast} zpool1 zpool2"),
            format!("[pve2] zfs list -H -p -t filesystem,volume,snapshot -r {fast} zpool1 zpool2"),
        ]
    };
    for want in wanted.iter().map(String::as_str).chain([
        "zfs get -H -p -o name,property,value",
        "incremental @s2 -> @s3",
    ]) {
        assert!(log.contains(want), "{want}:\n{log}");
    }
    assert!(
        !log.contains("in full") && !log.contains("snapshot -r -o name,type,guid"),
        "no full listing:\n{log}"
    );
    assert_eq!(
        all_snapshot_guids(&lab, A, "zpool1"),
        all_snapshot_guids(&lab, B, "zpool1")
    );
    let h = holds(&lab, A);
    assert!(h.lines().all(|l| l.contains("@s3\t")), "{h}");
    assert_eq!(h.lines().count(), 5, "{h}");
    // The status reads the exact snapshots: names, guids, creation times.
    let st: serde_json::Value =
        serde_json::from_str(&lab.ok(A, "zfs-nfs-replica status --json")).unwrap();
    let a = st["pools"][0]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "zpool1/a")
        .expect("zpool1/a in the status")
        .clone();
    assert_eq!(
        (&a["result"], &a["replicated"]["name"]),
        (&"sent".into(), &"s3".into())
    );
    assert!(a["lag_seconds"].as_i64().unwrap() < 600, "{a:#}");
    if !kept {
        // OpenZFS 2.1 has no `snapshots_changed`: asked once, then not for
        // a day (the plain fast listing meanwhile).
        assert!(
            log.contains("kept snapshot lists not used (no snapshots_changed"),
            "{log}"
        );
        let log = run("fast, 2.1 not asked again", 1);
        assert!(!log.contains(",snapshots_changed "), "{log}");
        assert!(log.contains(fast), "{log}");
    }
    if kept {
        // Listed again a run later: here not yet vouched for (seen in the
        // run before), there changed by the receive.
        let log = run("kept, after the receive", 1);
        for side in ["", "[pve2] "] {
            let l = listed_of(&log, side);
            assert!(l.len() == 1 && l[0].starts_with("zpool1 zpool1/a"), "{log}");
        }
        // As if those lists had been taken a minute after their values were
        // first seen (the record's boot-clock times rewritten: the lab's
        // nodes may have been up for less than that), nothing changed: no
        // snapshot is listed at all.
        lab.ok(
            A,
            "sed -i -E 's/\"seen\":[0-9]+/\"seen\":0/g; s/\"listed\":[0-9]+/\"listed\":60000000000/g' /var/lib/zfs-nfs-replica/kept/pve1.json /var/lib/zfs-nfs-replica/kept/pve2.json",
        );
        // (zpool2 never had a snapshot: its value is unset, it is always
        // listed, which costs nothing.)
        let log = run("kept, nothing changed", 1);
        assert!(
            log.contains(changes) && !log.contains(&format!("snapshot -r {fast}")),
            "{log}"
        );
        for side in ["", "[pve2] "] {
            assert_eq!(listed_of(&log, side), ["zpool2"], "all kept:\n{log}");
        }
        // One snapshot destroyed on the standby behind the tool's back:
        // that dataset alone is listed there.
        lab.ok(B, "zfs destroy zpool1/a@s1");
        let log = run("kept, one destroyed on the standby", 1);
        assert_eq!(listed_of(&log, ""), ["zpool2"], "{log}");
        assert_eq!(listed_of(&log, "[pve2] "), ["zpool1/a zpool2"], "{log}");
    }
    // A hold of ours left on @s1 (a crash between hold and release).
    lab.ok(
        A,
        "zfs hold zfs-nfs-replica:pve2 zpool1/a@s1
         echo four > /zpool1/a/four; zfs snapshot -r zpool1@s4",
    );
    let log = run("fast, the leaked hold unseen", 0);
    assert!(
        log.contains(fast) && log.contains("incremental @s3 -> @s4"),
        "{log}"
    );
    if kept {
        // Every dataset of zpool1 changed here (`-r`); on the standby only
        // the one listed last time is not yet vouched for.
        assert_eq!(
            listed_of(&log, ""),
            ["zpool1 zpool1/a zpool1/a/b 'zpool1/a/b c' zpool1/vol zpool2"],
            "{log}"
        );
        assert_eq!(listed_of(&log, "[pve2] "), ["zpool1/a zpool2"], "{log}");
    }
    assert!(holds(&lab, A).contains("zpool1/a@s1\tzfs-nfs-replica:pve2"));
    // The last full listing's record gone (as `full_listing_every` after it).
    lab.ok(A, "rm /var/lib/zfs-nfs-replica/full-listings.json");
    let log = run("full, nothing to send", 1);
    assert!(!log.contains(fast), "{log}");
    assert!(
        log.contains("zfs release zfs-nfs-replica:pve2 zpool1/a@s1"),
        "{log}"
    );
    let h = holds(&lab, A);
    assert!(h.lines().all(|l| l.contains("@s4\t")), "released:\n{h}");
    assert_eq!(h.lines().count(), 5, "{h}");
    assert!(
        lab.ok(A, "cat /var/lib/zfs-nfs-replica/full-listings.json")
            .contains("pve2")
    );
}

#[test]
fn lab_failover_with_unreplicated_writes_on_the_old_master_is_diverged_and_kept() {
    let lab = Lab::get();
    // Not from the saved copy: importing a pool again marks a zvol that was
    // written through its block device as written since its newest
    // snapshot (8192 B on OpenZFS 2.1.11, its ZIL claimed at import), which
    // the new master then refuses to roll back. Here the old master stands
    // as its last run left it, never re-imported.
    setup(&lab);
    initial_sync(&lab);
    // Writes on A after the last replication...
    lab.ok(
        A,
        "echo precious > /zpool1/a/after-last-run; zfs snapshot zpool1/a@on-a-only",
    );
    // ...then A fails (it no longer answers: its link is cut) and HA starts
    // the guest on B. Before the guest starts, its hookscript promotes B:
    // writable, mounted, sanoid on. (A node that still answered would hand
    // its last writes over: lab_a_planned_migration_*.)
    lab.ok(A, "ip link set eth1 down");
    lab.place_guest(B);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    let started = std::time::Instant::now();
    let hook = lab.replica(B, "hook 103 pre-start");
    let took = started.elapsed();
    lab.ok(A, "ip link set eth1 up");
    assert_eq!(hook.code, Some(0), "{}", hook.all());
    assert!(
        took < Duration::from_secs(30),
        "within [hook] timeout: {took:?}"
    );
    eprintln!(
        "[lab] pre-start hook promoted pve2 in {:.2}s",
        took.as_secs_f64()
    );
    let ro = lab.ok(
        B,
        "zfs get -H -o name,value,source readonly -r -t filesystem,volume zpool1 zpool2",
    );
    assert!(
        ro.lines().all(|l| l.contains("\toff\t")),
        "promoted datasets are writable:\n{ro}\n{}",
        hook.all()
    );
    assert_eq!(
        lab.ok(
            B,
            "zfs get -H -o value mounted zpool1/a zpool1/a/b 'zpool1/a/b c'"
        ),
        "yes\nyes\nyes\n",
        "{}",
        hook.all()
    );
    assert!(
        lab.ok(B, "cat /etc/sanoid/sanoid.conf").contains(
            "[zpool1]\n\tuse_template = production\n\trecursive = yes\n\tautosnap = yes\n"
        ),
        "{}",
        hook.all()
    );
    let rec = lab.ok(B, "cat /var/lib/zfs-nfs-replica/last-promotion.json");
    assert!(
        rec.contains("\"promoted\": true") && rec.contains("zfs inherit readonly zpool1"),
        "{rec}"
    );
    // The guest runs on B now; its writes and snapshots.
    lab.pve.set(|s| s.guest_status = "running".into());
    lab.ok(
        B,
        "echo new-master > /zpool1/a/on-b && zfs snapshot -r zpool1@on-b",
    );
    let plan = dry_run_changes_nothing(&lab, B, "--pool zpool1");
    assert!(
        plan.contains("CONFLICT diverged") && plan.contains("@on-a-only"),
        "{plan}"
    );
    let out = lab.replica(B, "run --pool zpool1");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stderr
            .contains("receiver-only newer snapshots: @on-a-only"),
        "{}",
        out.stderr
    );
    assert_eq!(
        lab.ok(A, "cat /zpool1/a/after-last-run"),
        "precious\n",
        "A's writes are kept"
    );
    assert_eq!(
        lab.ok(A, "zfs list -H -o name -t snapshot zpool1/a"),
        "zpool1/a@s1\nzpool1/a@s2\nzpool1/a@on-a-only\n",
        "nothing destroyed on A"
    );
    // The diverged subtree waits for the operator; the rest replicates B -> A.
    assert_eq!(
        lab.sh(A, "zfs list zpool1/a/b@on-b").code,
        Some(1),
        "the diverged dataset's children are not touched"
    );
    assert_eq!(
        lab.guid(A, "zpool1/vol@on-b"),
        lab.guid(B, "zpool1/vol@on-b")
    );

    // The old master's root diverges as well: written to by hand.
    lab.ok(
        A,
        "zfs set readonly=off zpool1 && echo by-hand > /zpool1/on-a-root && zfs snapshot zpool1@a-root",
    );
    // `diverged` lists both, with the evidence, on the master and on the
    // standby alike.
    for n in [B, A] {
        let out = lab.replica(n, "diverged");
        assert_eq!(out.code, Some(4), "on {n}: {}", out.all());
        for want in [
            "zpool1 -> pve1:zpool1: diverged",
            "zpool1/a -> pve1:zpool1/a: diverged",
            "only on pve1 (receiver), newer: @on-a-only",
            "only on pve1 (receiver), newer: @a-root",
            "only on pve2 (source), newer: @on-b",
            "zfs-nfs-replica resolve 'zpool1/a' --keep-divergent",
        ] {
            assert!(out.stdout.contains(want), "on {n}, {want}: {}", out.stdout);
        }
    }
    // resolve --dry-run shows every step and changes nothing.
    let plan = changes_nothing(&lab, B, "resolve zpool1 --keep-divergent --dry-run");
    for want in [
        "would resolve zpool1 on pve1 (receiver)",
        // The root's common snapshot is @on-b: B's first run sent it.
        "DESTRUCTIVE zfs rollback -r zpool1@on-b",
        "destroys zpool1's @a-root",
        "zfs rename -u zpool1/a zpool1/zfs-nfs-replica-quarantine/",
        "zfs promote zpool1/a",
    ] {
        assert!(plan.contains(want), "{want}: {plan}");
    }
    let out = lab.replica(B, "resolve zpool1 --keep-divergent");
    assert_eq!(out.code, Some(0), "{}", out.all());
    // The next run re-syncs everything from the common snapshot.
    let out = lab.replica(B, "run --pool zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(
        live_snapshot_guids(&lab, A, "zpool1"),
        live_snapshot_guids(&lab, B, "zpool1"),
        "every live snapshot matches by guid"
    );
    // The divergent data is kept on A, readable, read-only and held.
    let q = "/var/lib/zfs-nfs-replica/quarantine/zpool1";
    assert_eq!(
        lab.ok(A, &format!("cat {q}/*/a/after-last-run")),
        "precious\n"
    );
    assert_eq!(lab.ok(A, &format!("cat {q}/*/on-a-root")), "by-hand\n");
    assert_ne!(lab.sh(A, &format!("touch {q}/*/a/x")).code, Some(0));
    assert!(
        holds(&lab, A).contains("zfs-nfs-replica-quarantine"),
        "{}",
        holds(&lab, A)
    );
    let out = lab.replica(B, "diverged");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout
            .contains("quarantine on pve1: zpool1/zfs-nfs-replica-quarantine/"),
        "{}",
        out.stdout
    );
}

/// The role follows the guest: A (hosting it) snapshots and sends, B turns
/// its snapshots off and reports how far behind it is; any doubt (HA fencing,
/// lost quorum, an API error, a lock, a migration starting between two
/// checks) stops both nodes with the reason and changes nothing anywhere.
#[test]
fn lab_roles_follow_the_guest_and_any_doubt_changes_nothing() {
    let lab = Lab::get();
    synced(&lab);
    let sanoid = "cat /etc/sanoid/sanoid.conf";
    let on_a = common::lab::SANOID_CONF.replace(
        "\trecursive = yes\n\n[zpool2]",
        "\trecursive = yes\n\tautosnap = yes\n\n[zpool2]",
    );
    assert_eq!(
        lab.ok(A, sanoid),
        on_a,
        "master: autosnap on, nothing else changed"
    );

    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.stderr.contains("this node is a standby"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("zpool1: newest snapshot zpool1") && out.stderr.contains(" old"),
        "how far behind: {}",
        out.stderr
    );
    let on_b = common::lab::SANOID_CONF
        .replace(
            "\trecursive = yes\n\n[zpool2]",
            "\trecursive = yes\n\tautosnap = no\n\n[zpool2]",
        )
        .replace(
            "\trecursive = yes\n\tautosnap = yes\n\n[template",
            "\trecursive = yes\n\tautosnap = no\n\n[template",
        );
    assert_eq!(
        lab.ok(B, sanoid),
        on_b,
        "standby: autosnap off, template untouched"
    );
    assert_eq!(
        lab.ok(B, "cat /etc/sanoid/sanoid.conf.bak"),
        common::lab::SANOID_CONF
    );
    // Its copies (received with -u) are mounted now, read-only, and nothing
    // was written into them; the next incremental goes into them mounted.
    let mounts = || {
        lab.ok(
            B,
            "zfs list -H -p -o name,mounted,readonly,written -t filesystem -r zpool1",
        )
    };
    let m = mounts();
    assert!(
        m.lines().count() >= 3 && m.lines().all(|l| l.ends_with("\tyes\ton\t0")),
        "{m}\n{}",
        out.stderr
    );
    lab.ok(
        A,
        "echo more > /zpool1/a/b/more; zfs snapshot -r zpool1@mounted",
    );
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(
        lab.guid(A, "zpool1/a/b@mounted"),
        lab.guid(B, "zpool1/a/b@mounted")
    );
    assert_eq!(lab.ok(B, "cat /zpool1/a/b/more"), "more\n");
    assert_eq!(mounts(), m, "still mounted, read-only, unwritten");

    lab.ok(A, "echo x > /zpool1/a/doubt; zfs snapshot -r zpool1@doubt");
    let before = lab.on_each(|n| (lab.zfs_state(n), lab.ok(n, sanoid)));
    type Step = common::pve::Step;
    let doubts: [(&str, Step, &str); 5] = [
        (
            "HA fences A",
            |s| {
                s.nodes.get_mut("pve1").unwrap().online = false;
                s.crm_state = "fence".into();
            },
            "offline",
        ),
        ("quorum lost", |s| s.quorate = false, "not quorate"),
        (
            "API error",
            |s| s.fault = common::pve::Fault::Status(500, String::new()),
            "HTTP 500",
        ),
        (
            "backup lock",
            |s| s.lock = Some("backup".into()),
            "locked (`backup`)",
        ),
        (
            "HA recovery",
            |s| s.crm_state = "recovery".into(),
            "`recovery`",
        ),
    ];
    for (name, step, want) in doubts {
        lab.place_guest(A);
        lab.pve.set(step);
        for n in NODES {
            let out = lab.replica(n, "run");
            assert_eq!(out.code, Some(4), "{name} on {n}: {}", out.all());
            assert!(
                out.stderr.contains("refusing: nobody is surely master")
                    && out.stderr.contains(want),
                "{name} on {n}: {}",
                out.stderr
            );
        }
    }
    // A migration that starts between the first and the second check.
    lab.place_guest(A);
    lab.pve.after(4, |s| {
        s.lock = Some("migrate".into());
        s.crm_state = "migrate".into();
    });
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(out.stderr.contains("check 2 of 3"), "{}", out.stderr);
    let after = lab.on_each(|n| (lab.zfs_state(n), lab.ok(n, sanoid)));
    assert_eq!(before, after, "doubt changed something");

    // Certainty again: A sends what waited.
    lab.place_guest(A);
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(lab.guid(A, "zpool1/a@doubt"), lab.guid(B, "zpool1/a@doubt"));
}

#[test]
fn lab_a_receiver_modified_behind_our_back_is_refused() {
    let lab = Lab::get();
    synced(&lab);
    lab.ok(B, "zfs set readonly=off zpool1/a/b && zfs mount zpool1/a/b && echo sneaky > /zpool1/a/b/sneaky && sync");
    lab.ok(A, "echo next > /zpool1/a/b/next; zfs snapshot -r zpool1@s3");
    let plan = dry_run_changes_nothing(&lab, A, "");
    assert!(plan.contains("receiver-modified"), "{plan}");
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert_eq!(
        lab.ok(B, "cat /zpool1/a/b/sneaky"),
        "sneaky\n",
        "nothing rolled back"
    );
    assert_eq!(
        lab.guid(A, "zpool1/a@s3"),
        lab.guid(B, "zpool1/a@s3"),
        "the rest of the pool still replicates"
    );
}

#[test]
fn lab_a_full_standby_pool_fails_cleanly_and_the_next_run_recovers() {
    let lab = Lab::get();
    setup(&lab);
    // A small standby pool.
    // (ZFS keeps up to half of a small pool as slop space: 256M leaves ~110M usable.)
    lab.ok(B, "zpool destroy zpool1 && rm -rf /pools/zpool1.img /zpool1 && truncate -s 256M /pools/zpool1.img && zpool create -f -o cachefile=none zpool1 /pools/zpool1.img");
    initial_sync(&lab);
    lab.ok(B, "zfs create -o readonly=off zpool1/filler && (dd if=/dev/urandom of=/zpool1/filler/x bs=1M status=none 2>/dev/null; true) && sync");
    lab.ok(A, "dd if=/dev/urandom of=/zpool1/a/big bs=1M count=48 status=none && zfs snapshot -r zpool1@big");
    dry_run_changes_nothing(&lab, A, "");
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(3), "{}", out.all());
    assert!(
        out.stderr.to_lowercase().contains("space"),
        "the error says why: {}",
        out.stderr
    );
    // Space is freed asynchronously after a destroy: wait until it is back.
    lab.ok(B, "zfs destroy -r zpool1/filler && zpool sync && while [ \"$(zpool get -H -p -o value freeing zpool1)\" != 0 ]; do sleep 0.5; done");
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(lab.guid(A, "zpool1/a@big"), lab.guid(B, "zpool1/a@big"));
}

#[test]
fn lab_each_node_reaches_its_proxmox_api_stand_in() {
    let lab = Lab::get();
    for n in NODES {
        // A truncated TLS ClientHello through qemu's guestfwd: the node's own
        // listener answers with a TLS alert record (content type 0x15).
        let first = lab.ok(n, "exec 3<>/dev/tcp/10.0.2.100/8006 && printf '\\x16\\x03\\x01\\x00\\x05\\x01\\x00\\x00\\x01\\x00' >&3 && timeout 5 head -c 1 <&3 | od -An -tx1");
        assert_eq!(first.trim(), "15", "{n}: {first:?}");
    }
    // The scenario side moves the guest; every node's API then agrees.
    lab.pve.migrate(B);
    assert_eq!(lab.pve.state().guest_node.as_deref(), Some(B));
    lab.pve.migrate(A);
}

#[test]
fn lab_check_reaches_the_peer_and_lists_both_sides() {
    let lab = Lab::get();
    setup(&lab);
    // Every scenario runs the tool within the unit's limits (`unit_limits`):
    // they hold, and they bite. Bounding set: CHOWN 0, DAC_OVERRIDE 1,
    // DAC_READ_SEARCH 2, FOWNER 3, KILL 5, SYS_ADMIN 21.
    let limited = lab.ok(
        A,
        &format!(
            "{} sh -c 'grep -E \"^(CapBnd|CapEff|NoNewPrivs)\" /proc/self/status; umask'",
            common::lab::unit_limits()
        ),
    );
    assert_eq!(
        limited,
        "CapEff:\t000000000020002f\nCapBnd:\t000000000020002f\nNoNewPrivs:\t1\n0077\n"
    );
    let without_admin = lab.sh(
        A,
        "/usr/bin/setpriv --bounding-set -sys_admin -- zfs set readonly=on zpool1",
    );
    assert_ne!(without_admin.code, Some(0), "{}", without_admin.all());
    let out = lab.replica(A, "check");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout
            .contains("config: ok (2 pool(s), this node: pve1)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "proxmox https://10.0.2.100:8006: ok, guest 103 runs here: this node (pve1) is master"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ssh pve2 (192.168.100.20): ok"),
        "{}",
        out.stdout
    );
    // The lab's replication key is restricted to `serve`, and check says so;
    // the harness's own key has a full shell, and check warns about it.
    assert!(
        out.stdout
            .contains("key restricted to `zfs-nfs-replica serve`: ok"),
        "{}",
        out.stdout
    );
    lab.ok(
        A,
        "sed 's#/root/.ssh/replica_ed25519#/root/.ssh/id_ed25519#' /etc/zfs-nfs-replica/config.toml > /root/full-shell.toml",
    );
    let full = lab.replica(A, "check -c /root/full-shell.toml");
    assert!(
        full.stdout.contains("key WARNING: a full shell"),
        "{}",
        full.all()
    );
    for (node, pool) in [(A, "zpool1"), (A, "zpool2"), (B, "zpool1"), (B, "zpool2")] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(node) && l.contains(pool) && l.contains("ONLINE")),
            "{node} {pool}:\n{}",
            out.stdout
        );
    }
    // A pool missing on the peer is reported, with the refusal code.
    lab.ok(B, "zpool destroy zpool2");
    let out = lab.replica(A, "check");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(out.stdout.contains("MISSING"), "{}", out.stdout);
}

/// The size guards on real pools: a source that lost most of its data, a
/// corrupt history, a replica changed behind our back and an empty
/// replacement disk are each refused with the numbers, and nothing is sent;
/// `--accept-size-change` lets one run through; `history rebuild` unblocks.
#[test]
fn lab_size_guards_refuse_what_looks_wrong() {
    let lab = Lab::get();
    synced(&lab);
    let hist = "/var/lib/zfs-nfs-replica/history/zpool1.json";
    assert!(
        lab.ok(A, &format!("cat {hist}")).contains("\"zpool1/a\""),
        "the first run seeded the history"
    );

    // Most of zpool1/a's data deleted on the master.
    lab.ok(
        A,
        "rm /zpool1/a/f /zpool1/a/f2 && zfs snapshot -r zpool1@s3",
    );
    let b_before = lab.zfs_state(B);
    let out = lab.replica(A, "run --pool zpool1");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stderr.contains("zpool1/a is empty") && out.stderr.contains("shrank from"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("run --accept-size-change zpool1"),
        "{}",
        out.stderr
    );
    assert_eq!(lab.zfs_state(B), b_before, "nothing was sent");
    // The operator accepts it once.
    let out = lab.replica(A, "run --pool zpool1 --accept-size-change zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stderr.contains("overridden by --accept-size-change"),
        "{}",
        out.stderr
    );
    assert_eq!(lab.guid(A, "zpool1/a@s3"), lab.guid(B, "zpool1/a@s3"));
    // The history now holds the new sizes: no override needed any more.
    lab.ok(A, "zfs snapshot -r zpool1@s4");
    let out = lab.replica(A, "run --pool zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());

    // A truncated history: moved aside, the pool refused until rebuilt.
    lab.ok(A, &format!("truncate -s 100 {hist}"));
    for _ in 0..2 {
        let out = lab.replica(A, "run --pool zpool1");
        assert_eq!(out.code, Some(4), "{}", out.all());
        assert!(
            out.stderr.contains("history rebuild zpool1"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        lab.ok(
            A,
            "ls /var/lib/zfs-nfs-replica/history | grep -c 'zpool1.json.corrupt-'"
        )
        .trim(),
        "1",
        "kept aside"
    );
    let out = lab.replica(A, "history rebuild zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());
    let out = lab.replica(A, "run --pool zpool1");
    assert_eq!(out.code, Some(1), "{}", out.all());

    // Someone destroys a replica on the standby.
    lab.ok(
        B,
        "zfs release zfs-nfs-replica:pve1 'zpool1/a/b c@s4' && zfs destroy -r 'zpool1/a/b c'",
    );
    let out = lab.replica(A, "run --pool zpool1");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stderr
            .contains("the replica of zpool1/a/b c on pve2 is gone"),
        "{}",
        out.stderr
    );

    // The master's disk is replaced by an empty one (same pool name).
    let b_before = lab.zfs_state(B);
    lab.ok(A, "zpool destroy zpool1 && rm -f /pools/zpool1.img && truncate -s 512M /pools/zpool1.img && \
               zpool create -f -o cachefile=none -o ashift=12 zpool1 /pools/zpool1.img && zfs snapshot zpool1@autosnap_new");
    let out = lab.replica(A, "run --pool zpool1");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stderr.contains("was recreated") && out.stderr.contains("gone since the last run"),
        "{}",
        out.stderr
    );
    assert_eq!(lab.zfs_state(B), b_before, "the good replica is untouched");
}

/// A standby made by the old script (syncoid): same guids, no holds,
/// writable, mounted, access times touched. `run` refuses it (the receiver
/// looks modified); `adopt` proves there is nothing to lose and turns it
/// into a read-only standby; a standby with a real write is refused with
/// the file named, and nothing changes.
#[test]
fn lab_adopting_a_standby_made_by_syncoid() {
    let lab = Lab::get();
    setup(&lab);
    populate(&lab);
    lab.ok(
        A,
        "zfs create zpool2/x && echo data > /zpool2/x/f && zfs snapshot -r zpool2@s1",
    );
    // The old script, as it ran: syncoid over ssh, children of each pool.
    for p in ["zpool1/a", "zpool1/vol", "zpool2/x"] {
        let out = lab.sh(
            A,
            &format!(
                "syncoid --recursive --no-sync-snap --no-privilege-elevation {p} root@pve2:{p} 2>&1"
            ),
        );
        assert_eq!(out.code, Some(0), "syncoid {p}: {}", out.all());
    }
    // People read from the standby (atime), and someone wrote on zpool2.
    lab.ok(
        B,
        "cat /zpool1/a/f /zpool1/a/b/g > /dev/null && echo oops > /zpool2/x/new && zpool sync",
    );
    assert_ne!(
        lab.ok(B, "zfs get -H -p -o value written zpool1/a").trim(),
        "0",
        "reading updated access times"
    );
    let plan = dry_run_changes_nothing(&lab, A, "--pool zpool1 --overwrite-empty-target");
    assert!(
        plan.contains("zpool1/a                                 CONFLICT receiver-modified"),
        "{plan}"
    );

    // zpool2 has a real write: refused, the file named, nothing changed.
    // (`zfs diff` of a live filesystem takes and drops a snapshot of its
    // own: space accounting moves, nothing else does.)
    let b_before = lab.zfs_identity(B);
    let out = lab.replica(A, "adopt zpool2");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stdout.contains("REFUSED: zpool2/x:") && out.stdout.contains("/zpool2/x/new"),
        "{}",
        out.stdout
    );
    assert_eq!(
        lab.zfs_identity(B),
        b_before,
        "a refused adoption changes nothing"
    );

    // zpool1: only access times. The dry run shows the steps, changes nothing.
    let b_before = lab.zfs_identity(B);
    let out = lab.replica(A, "adopt zpool1 --dry-run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(lab.zfs_identity(B), b_before, "the dry run changes nothing");
    let plan = out.stdout;
    assert!(
        plan.contains("access times only") && plan.contains("DESTRUCTIVE zfs rollback zpool1/a@s2"),
        "{plan}"
    );
    let out = lab.replica(A, "adopt zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(
        lab.ok(
            B,
            "zfs get -H -o value readonly zpool1/a zpool1/a/b 'zpool1/a/b c' zpool1/vol"
        ),
        "on\non\non\non\n"
    );
    // From now on it is a standby like any other: the root (which syncoid
    // never created) is replaced once, the rest goes incrementally.
    lab.ok(A, "echo more > /zpool1/a/more && zfs snapshot -r zpool1@s3");
    let out = lab.replica(A, "run --pool zpool1 --overwrite-empty-target");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stderr.contains("incremental @s2 -> @s3"),
        "{}",
        out.stderr
    );
    assert_eq!(lab.guid(A, "zpool1/a@s3"), lab.guid(B, "zpool1/a@s3"));
    assert!(holds(&lab, B).contains("zpool1/a@s3\tzfs-nfs-replica:pve1"));
    assert_eq!(
        standby_sha(&lab, "zpool1/a", "/zpool1/a/f"),
        sha(&lab, A, "/zpool1/a/f")
    );
}

/// Pool health on real pools: a master's pool that lost a mirror side is
/// DEGRADED. "alert" replicates it anyway, "refuse" skips it, "failover"
/// replicates what it can and asks HA (the API stand-in) to move the guest
/// to the healthy standby; a second failure within the cooldown stops the
/// guest instead. The standby reports its own pools.
#[test]
fn lab_an_unhealthy_source_pool_alert_refuse_failover() {
    let lab = Lab::get();
    synced(&lab);
    // zpool2 on A: a mirror that lost one side.
    lab.ok(
        A,
        "zpool destroy zpool2 && truncate -s 512M /pools/zpool2.img /pools/zpool2b.img && \
         zpool create -f -o cachefile=none -o ashift=12 zpool2 mirror /pools/zpool2.img /pools/zpool2b.img && \
         zfs create zpool2/x && echo x > /zpool2/x/f && zfs snapshot -r zpool2@h1 && \
         zpool export zpool2 && rm /pools/zpool2b.img && zpool import -d /pools -o cachefile=none zpool2 && \
         zfs snapshot -r zpool1@h1",
    );
    // (The size guards see a recreated pool: accepted, once.)
    let out = lab.replica(
        A,
        "run --accept-size-change zpool2 --overwrite-empty-target",
    );
    assert_eq!(out.code, Some(0), "alert replicates anyway: {}", out.all());
    assert!(
        out.stderr
            .contains("pool health: zpool2: FAIL (state DEGRADED")
            && out.stderr.contains("replicating anyway"),
        "{}",
        out.stderr
    );
    assert_eq!(lab.guid(A, "zpool2/x@h1"), lab.guid(B, "zpool2/x@h1"));
    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(
        out.stderr.contains("pool health: zpool2: ONLINE"),
        "the standby reports its own pools: {}",
        out.stderr
    );

    let extra = "[timeouts]\nstall = \"10s\"\nkill_grace = \"2s\"\n[health]\n";
    lab.configure(A, &format!("{extra}on_unhealthy = \"refuse\"\n"));
    lab.ok(A, "zfs snapshot -r zpool1@h2 && zfs snapshot -r zpool2@h2");
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert_eq!(lab.guid(A, "zpool1/a@h2"), lab.guid(B, "zpool1/a@h2"));
    assert_eq!(
        lab.sh(B, "zfs list zpool2/x@h2").code,
        Some(1),
        "the unhealthy pool is not sent"
    );

    lab.configure(A, &format!("{extra}on_unhealthy = \"failover\"\n"));
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stderr.contains("failover: HA migrates ct:103 to pve2"),
        "{}",
        out.stderr
    );
    assert_eq!(
        lab.guid(A, "zpool2/x@h2"),
        lab.guid(B, "zpool2/x@h2"),
        "replicated as far as it could be before the handover"
    );
    let st = lab.pve.state();
    assert_eq!(st.guest_node.as_deref(), Some(B));
    assert!(
        st.log
            .iter()
            .any(|l| l.ends_with("POST /api2/json/cluster/ha/resources/ct:103/migrate node=pve2")),
        "{:?}",
        st.log
    );
    assert!(
        lab.ok(A, "cat /var/lib/zfs-nfs-replica/last-failover.json")
            .contains("\"action\": \"migrate\"")
    );

    // The guest comes back to A within the cooldown, and A is still sick:
    // stopped, not thrown back and forth.
    lab.place_guest(A);
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(4), "{}", out.all());
    assert!(
        out.stderr
            .contains("second health failure within the cooldown")
            && out.stderr.contains("HA stops ct:103"),
        "{}",
        out.stderr
    );
    let st = lab.pve.state();
    assert_eq!(st.crm_state, "stopped");
    assert!(
        st.log
            .iter()
            .any(|l| l.ends_with("PUT /api2/json/cluster/ha/resources/ct:103 state=stopped")),
        "{:?}",
        st.log
    );
}

/// The lab benchmark (benches/lab.rs) still runs: its smoke version (a tiny
/// tree, each measurement once, our incremental twice with the bench's
/// resets in between) on this lab, with the report it would print.
#[test]
fn lab_bench_harness_runs() {
    let lab = Lab::get();
    let report = common::bench::bench(
        &lab,
        &common::bench::Opts {
            runs: 1,
            smoke: true,
        },
        &common::bench::Tree::new(true),
    );
    for want in [
        "### Idle cycle",
        "| zfs-nfs-replica run (full-shell key) |",
        "| zfs-nfs-replica run (key restricted to serve) |",
        "| zfs-nfs-replica run (whole run, key restricted to serve) |",
        "| syncoid --recursive --no-sync-snap |",
        "### Incremental",
        "| zfs-nfs-replica: its transfers alone |",
        "### Footprint",
    ] {
        assert!(report.contains(want), "{want}:\n{report}");
    }
    assert!(
        !report.contains("NaN") && !report.contains("not reported"),
        "every measurement was taken:\n{report}"
    );
    // The same requests either way: through the peer's shell, or as the
    // restricted key's forced command (each counted by the peer's sshd).
    let commands = |row: &str| -> usize {
        let line = report.lines().find(|l| l.starts_with(row)).unwrap();
        line.split('|').nth(4).unwrap().trim().parse().unwrap()
    };
    let shell = commands("| zfs-nfs-replica run (full-shell key) |");
    assert!(shell >= 2, "{report}");
    assert_eq!(
        commands("| zfs-nfs-replica run (key restricted to serve) |"),
        shell,
        "{report}"
    );
}

/// Bytes as a `printf` format that writes exactly them (octal escapes):
/// CR, a byte-order mark and a missing final newline survive the trip.
fn printf_bytes(b: &[u8]) -> String {
    b.iter().map(|c| format!("\\{c:03o}")).collect()
}

/// Real sanoid (Debian 12's 2.1.0) judges the rewrite on real pools: for
/// each sanoid.conf shape people write (tests/common/sanoid_shapes.rs), the
/// file rewritten for the master and for a standby, and which datasets
/// `sanoid --take-snapshots --readonly --verbose` then would snapshot.
#[test]
fn lab_sanoid_snapshots_exactly_what_the_role_allows() {
    use common::sanoid_shapes::{TREE, all, snapshotted};
    let lab = Lab::get();
    lab.fresh_pools();
    let tree: String = TREE
        .iter()
        .filter(|d| d.contains('/'))
        .map(|d| format!("zfs create -p {d} && "))
        .collect();
    let shapes = all();
    assert!(shapes.len() >= 15);
    // Half the shapes on each node, both at once.
    let mut setup = [String::new(), String::new()];
    for (i, s) in shapes.iter().enumerate() {
        let managed: Vec<String> = s.managed.iter().map(|m| m.to_string()).collect();
        for (role, on) in [("master", true), ("standby", false)] {
            let r = zfs_nfs_replica::sanoid::rewrite::rewrite(s.conf.as_bytes(), &managed, on)
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            let dir = format!("/tmp/oracle/{}/{role}", s.name);
            setup[i % 2] += &format!(
                "mkdir -p {dir} && printf '{}' > {dir}/sanoid.conf && cp /usr/share/sanoid/sanoid.defaults.conf {dir}/\n",
                printf_bytes(&r.text)
            );
        }
    }
    let judge = "mkdir -p /tmp/oracle-cache /tmp/oracle-run; for d in /tmp/oracle/*/*; do echo \"== $d\"; \
        PERL_HASH_SEED=7 PERL_PERTURB_KEYS=DETERMINISTIC sanoid --configdir=$d --cache-dir=/tmp/oracle-cache \
        --run-dir=/tmp/oracle-run --take-snapshots --readonly --verbose 2>&1; done";
    let outs = lab.on_each(|n| {
        let i = if n == A { 0 } else { 1 };
        lab.ok(
            n,
            &format!("rm -rf /tmp/oracle; {tree}true\n{}\n{judge}", setup[i]),
        )
    });
    let mut judged = 0;
    for out in outs {
        for block in out.split("== /tmp/oracle/").skip(1) {
            let (head, body) = block.split_once('\n').unwrap_or((block, ""));
            let (name, role) = head.trim().split_once('/').unwrap();
            let s = shapes.iter().find(|s| s.name == name).unwrap();
            assert!(
                !body.contains("FATAL")
                    && !body.contains("ignored key")
                    && !body.contains("duplicate key"),
                "{name} ({role}): sanoid complained:\n{body}"
            );
            let want: std::collections::BTreeSet<String> = match role {
                "master" => s.master,
                _ => s.standby,
            }
            .iter()
            .map(|d| d.to_string())
            .collect();
            assert_eq!(snapshotted(body), want, "{name} ({role}):\n{body}");
            judged += 1;
        }
    }
    assert_eq!(judged, shapes.len() * 2, "every shape, both roles");
}

/// The same shapes, judged by the same sanoid in four hash orders: sanoid
/// walks its sections in a different order each run, and the rewritten
/// files must come out the same in every one. sanoid runs here in the lab
/// image's build chroot (Debian 12's perl, sanoid and Config::IniFiles, as
/// in the nodes), where `zfs` is a stand-in that lists the shapes' dataset
/// tree (all sanoid's recursion asks) and no snapshots; the scenario above
/// judges the same shapes against real ZFS.
#[test]
fn lab_sanoid_judges_the_rewrite_alike_in_every_hash_order() {
    use common::sanoid_shapes::{TREE, all, snapshotted};
    common::lab::build_image();
    let chroot = common::lab::cache_dir().join("chroot-bookworm");
    assert!(
        chroot.join("usr/sbin/sanoid").exists(),
        "tests/lab/build.sh makes {}",
        chroot.display()
    );
    let inside = format!("/tmp/zfs-nfs-replica-oracle-{}", std::process::id());
    let work = chroot.join(inside.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("bin")).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(work.clone());
    std::fs::write(work.join("tree"), TREE.join("\n") + "\n").unwrap();
    let zfs = work.join("bin/zfs");
    std::fs::write(
        &zfs,
        format!(
            "#!/bin/sh\n# sanoid's questions: its recursion's children, and the snapshots (none)\ncase \"$1 $2\" in\n\
             'list -o') for a; do last=$a; done; grep -E \"^$last(/|\\$)\" {inside}/tree ;;\n\
             'get -Hrpt') ;;\n\
             *) echo \"zfs stand-in: unexpected: $*\" >&2; exit 1 ;;\nesac\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&zfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut runs = 0;
    for s in all() {
        let managed: Vec<String> = s.managed.iter().map(|m| m.to_string()).collect();
        for (role, on, want) in [("master", true, s.master), ("standby", false, s.standby)] {
            let r =
                zfs_nfs_replica::sanoid::rewrite::rewrite(s.conf.as_bytes(), &managed, on).unwrap();
            let conf = format!("{}-{role}", s.name);
            std::fs::create_dir_all(work.join(&conf)).unwrap();
            std::fs::write(work.join(&conf).join("sanoid.conf"), &r.text).unwrap();
            let want: std::collections::BTreeSet<String> =
                want.iter().map(|d| d.to_string()).collect();
            for seed in 0..4 {
                let cache = format!("{inside}/cache-{runs}");
                let out = std::process::Command::new("chroot")
                    .arg(&chroot)
                    .args(["/usr/bin/env", "-i"])
                    .arg(format!("PATH={inside}/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
                    .arg(format!("PERL_HASH_SEED={seed}"))
                    .arg("PERL_PERTURB_KEYS=DETERMINISTIC")
                    .args(["perl", "/usr/sbin/sanoid"])
                    .arg(format!("--configdir={inside}/{conf}"))
                    .arg(format!("--cache-dir={cache}"))
                    .arg(format!("--run-dir={cache}"))
                    .args(["--take-snapshots", "--readonly", "--verbose"])
                    .output()
                    .expect("chroot");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    out.status.success() && !text.contains("FATAL"),
                    "{} ({role}), seed {seed}:\n{text}",
                    s.name
                );
                assert_eq!(
                    snapshotted(&text),
                    want,
                    "{} ({role}), seed {seed}:\n{text}",
                    s.name
                );
                runs += 1;
            }
        }
    }
    // What the rewrite refuses, sanoid cannot load either.
    for (name, conf) in common::sanoid_shapes::unreadable() {
        let managed = vec!["zpool1".to_string(), "zpool2".to_string()];
        let e = zfs_nfs_replica::sanoid::rewrite::rewrite(conf.as_bytes(), &managed, false)
            .expect_err(name);
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sanoid.conf"), &conf).unwrap();
        let out = std::process::Command::new("chroot")
            .arg(&chroot)
            .args(["/usr/bin/env", "-i"])
            .arg(format!("PATH={inside}/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
            .args(["perl", "/usr/sbin/sanoid"])
            .arg(format!("--configdir={inside}/{name}"))
            .arg(format!("--cache-dir={inside}/{name}"))
            .arg(format!("--run-dir={inside}/{name}"))
            .args(["--take-snapshots", "--readonly", "--verbose"])
            .output()
            .expect("chroot");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && text.contains("FATAL"),
            "{name}: sanoid read what the rewrite refused ({e}):\n{text}"
        );
    }
    eprintln!("[lab] sanoid judged {runs} rewritten files, 4 hash orders each");
}

/// A planned migration loses nothing and needs nobody: the new node's
/// `pre-start` takes the old master's last writes (made after its last
/// snapshot, as NFS clients write until the guest stops) before it
/// promotes itself; then both nodes run on as the timer runs them, with no
/// conflict, no flag and no exit 4, there and back again. Timed: the start
/// delay with nothing written, and with 64 MiB written, after the last
/// snapshot. Then a crash: the old master does not answer, the new node
/// promotes at once and says so.
#[test]
fn lab_a_planned_migration_hands_the_last_writes_over_and_back() {
    let lab = Lab::get();
    synced(&lab);
    // Both nodes have run as the timer runs them: B knows it is A's standby.
    let out = lab.replica(B, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    let migrate = |from: &str, to: &str| -> (f64, String) {
        lab.place_guest(to);
        lab.pve.set(|s| s.guest_status = "stopped".into());
        let t = std::time::Instant::now();
        let hook = lab.replica(to, "hook 103 pre-start");
        let took = t.elapsed().as_secs_f64();
        assert_eq!(hook.code, Some(0), "{}", hook.all());
        lab.pve.set(|s| s.guest_status = "running".into());
        let rec = lab.ok(to, "cat /var/lib/zfs-nfs-replica/last-promotion.json");
        assert!(
            rec.contains(&format!("handover from {from}")) && rec.contains("\"promoted\": true"),
            "{rec}\n{}",
            hook.all()
        );
        assert!(!rec.contains("did not complete"), "{rec}\n{}", hook.all());
        (took, hook.all())
    };
    // 1. A -> B, nothing written since A's last snapshot.
    let (t0, _) = migrate(A, B);
    eprintln!("[lab] handover A -> B with nothing written: the start waited {t0:.1}s");
    let ro = |n: &str| lab.ok(n, "zfs get -H -o value readonly zpool1/a zpool1/a/b");
    assert_eq!(ro(A), "on\non\n", "the old master is read-only at once");
    assert_eq!(ro(B), "off\noff\n", "the new master is writable");
    assert!(
        lab.ok(A, "cat /etc/sanoid/sanoid.conf")
            .contains("\tautosnap = no\n")
    );
    for (n, want) in [(B, Some(0)), (A, Some(1)), (B, Some(1))] {
        let out = lab.replica(n, "run");
        assert!(matches!(out.code, Some(0) | Some(1)), "{n}: {}", out.all());
        if n == A {
            assert_eq!(out.code, want, "{}", out.all());
        }
    }
    // 2. B writes 64 MiB (and a small file elsewhere) after its last
    // snapshot, then the guest moves back to A.
    lab.ok(
        B,
        "dd if=/dev/urandom of=/zpool1/a/late bs=1M count=64 status=none && echo last-word > /zpool1/a/b/last && sync",
    );
    let want = sha(&lab, B, "zpool1/a/late zpool1/a/b/last");
    let (t64, log) = migrate(B, A);
    eprintln!("[lab] handover B -> A with 64 MiB written: the start waited {t64:.1}s");
    assert_eq!(sha(&lab, A, "zpool1/a/late zpool1/a/b/last"), want, "{log}");
    // 2b. Over to B and back to A again before any timer run. Each handover
    // starts a stretch as master that has no size history yet: A must not
    // compare B's copy with what A recorded in its first stretch (B's copy
    // has grown by 64 MiB since; the life test saw such a handover refused
    // because the handover recorded A as a standby before it sent).
    lab.ok(A, "echo again > /zpool1/a/b/again && sync");
    let want = sha(&lab, A, "zpool1/a/b/again");
    let (_, log) = migrate(A, B);
    assert_eq!(sha(&lab, B, "zpool1/a/b/again"), want, "{log}");
    migrate(B, A);
    // 3. The timer runs on both: in sync, no conflict, no flag.
    for n in [A, B, A] {
        let out = lab.replica(n, "run");
        assert!(matches!(out.code, Some(0) | Some(1)), "{n}: {}", out.all());
        assert!(!out.stderr.contains("refused"), "{n}: {}", out.stderr);
    }
    let live = |n: &str| all_snapshot_guids(&lab, n, "zpool1");
    assert_eq!(live(A), live(B), "the same snapshots on both, by guid");
    // 4. A crash: A does not answer (its link to B is down); B promotes at
    // once.
    lab.ok(A, "echo after-crash > /zpool1/a/lost-on-a");
    lab.ok(A, "ip link set eth1 down");
    lab.place_guest(B);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    let t = std::time::Instant::now();
    let hook = lab.replica(B, "hook 103 pre-start");
    let took = t.elapsed().as_secs_f64();
    assert_eq!(hook.code, Some(0), "{}", hook.all());
    let rec = lab.ok(B, "cat /var/lib/zfs-nfs-replica/last-promotion.json");
    assert!(
        rec.contains("unreachable") && rec.contains("\"promoted\": true"),
        "{rec}"
    );
    assert!(
        took < 20.0,
        "promoted at once when the old master is gone: {took:.1}s"
    );
    assert_eq!(ro(B), "off\noff\n");
    eprintln!("[lab] crash: B promoted {took:.1}s after its pre-start, without A");
    lab.ok(A, "ip link set eth1 up");
}

/// Split brain: each node's API and `.vmlist` place the guest on that node
/// itself (the moment around a migration when two nodes' checks, run at
/// different times, can each see it). Both act as master; each asks the
/// other before writing into it, hears "master" back, and writes nothing:
/// no snapshot arrives anywhere, both runs exit 4 and say why.
#[test]
fn lab_two_nodes_that_both_believe_they_are_master_write_into_neither() {
    let lab = Lab::get();
    synced(&lab);
    lab.ok(
        A,
        "echo a > /zpool1/a/new-on-a && zfs snapshot -r zpool1@s3",
    );
    let before = lab.on_each(|n| all_snapshot_guids(&lab, n, "zpool1"));
    lab.pve
        .set(|s| s.each_its_own = vec![A.to_string(), B.to_string()]);
    lab.on_each(|n| {
        lab.ok(
            n,
            &format!(
                r#"printf '%s\n' '{{"version":8,"ids":{{"103":{{"node":"{n}","type":"lxc","version":4}}}}}}' > /etc/pve/.vmlist"#
            ),
        )
    });
    let outs = lab.on_each(|n| lab.replica(n, "run"));
    for (n, out) in NODES.iter().zip(&outs) {
        assert_eq!(out.code, Some(4), "{n}: {}", out.all());
        assert!(
            out.stderr.contains("this node is master"),
            "{n}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("says it is master itself"),
            "{n} names why: {}",
            out.stderr
        );
    }
    let after = lab.on_each(|n| all_snapshot_guids(&lab, n, "zpool1"));
    assert_eq!(before, after, "nothing was received anywhere");
    assert!(
        !after[1].iter().any(|l| l.contains("@s3")),
        "B never got A's new snapshot"
    );
}

/// The life test (tests/common/life.rs): `LIFE_EVENTS` random events
/// (default 30) from `LIFE_SEED` (default: from the clock, printed), every
/// invariant checked after each. `tests/lab/life.sh` runs long ones.
#[test]
fn lab_life_of_a_cluster() {
    let lab = Lab::get();
    let events: usize = std::env::var("LIFE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("LIFE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        });
    eprintln!("[life] LIFE_SEED={seed} LIFE_EVENTS={events}");
    let mut life = common::life::Life::new(&lab, seed);
    life.play(events);
    eprintln!(
        "[life] seed {seed}: {events} events, no fault; {:?}; {} resolve(s), {} size change(s) accepted, {} quiet round(s), {} old snapshot(s) read back",
        life.counts, life.resolves, life.accepted, life.quiet_rounds, life.versions_read
    );
}

/// Least privilege without root over ssh: the standby's replication user is
/// an ordinary user, restricted to `serve`, with `zfs allow` delegation of
/// exactly what receiving needs (README: Least privilege). Incremental
/// replication, holds, a resumed receive's abort and the role question
/// all work as that user; what it was not delegated fails cleanly.
#[test]
fn lab_replication_as_a_non_root_user_with_zfs_allow() {
    let lab = Lab::get();
    synced(&lab);
    lab.ok(
        B,
        &format!(
            "set -e
             # (the lab image has no useradd)
             if ! id zfsrepl >/dev/null 2>&1; then
                 echo 'zfsrepl:x:1001:1001::/home/zfsrepl:/bin/sh' >> /etc/passwd
                 echo 'zfsrepl:x:1001:' >> /etc/group
                 echo 'zfsrepl:*:19000:0:99999:7:::' >> /etc/shadow
             fi
             install -d -m 700 -o zfsrepl -g zfsrepl /home/zfsrepl/.ssh
             echo 'command=\"/usr/bin/zfs-nfs-replica serve\",restrict {key}' > /home/zfsrepl/.ssh/authorized_keys
             chown zfsrepl:zfsrepl /home/zfsrepl/.ssh/authorized_keys; chmod 600 /home/zfsrepl/.ssh/authorized_keys
             # OpenZFS's udev rule (90-zfs.rules) makes /dev/zfs 0666 on a
             # real node; the lab guest has no udev
             chmod 0666 /dev/zfs
             for p in zpool1 zpool2; do zfs allow -u zfsrepl {perms} $p; done
             chown zfsrepl /etc/zfs-nfs-replica/pve-token
             install -d -m 700 -o zfsrepl /run/zfs-nfs-replica",
            key = lab.replica_public_key(),
            perms = NON_ROOT_PERMISSIONS,
        ),
    );
    lab.ok(
        A,
        "sed -i 's/^\\[ssh\\]$/[ssh]\\nuser = \"zfsrepl\"/' /etc/zfs-nfs-replica/config.toml",
    );
    let out = lab.replica(A, "check");
    assert!(
        out.stdout
            .contains("key restricted to `zfs-nfs-replica serve`: ok"),
        "{}",
        out.all()
    );
    lab.ok(
        A,
        "set -e
         dd if=/dev/urandom of=/zpool1/a/nonroot bs=1M count=1 status=none
         zfs snapshot -r zpool1@s3",
    );
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(
        all_snapshot_guids(&lab, A, "zpool1"),
        all_snapshot_guids(&lab, B, "zpool1"),
        "every snapshot arrived through the non-root user"
    );
    assert_eq!(
        standby_sha(&lab, "zpool1/a", "zpool1/a/nonroot"),
        sha(&lab, A, "zpool1/a/nonroot")
    );
    // The holds on the standby were placed by that user, with our tag.
    let h = holds(&lab, B);
    assert!(h.lines().any(|l| l.contains("@s3\t")), "{h}");
    // A second run has nothing to do.
    let out = lab.replica(A, "run");
    assert_eq!(out.code, Some(1), "{}", out.all());
    // Nothing it was not delegated: destroying is refused by ZFS itself
    // even if a request got that far (it cannot: serve has no destroy).
    let out = lab.sh(
        B,
        "setpriv --reuid=zfsrepl --regid=zfsrepl --clear-groups zfs destroy zpool1/a@s1",
    );
    assert_ne!(out.code, Some(0), "{}", out.all());
}

/// The restricted key on real pools: hostile command lines through sshd
/// are refused (exit 6, one line) and change nothing in ZFS; a receiver
/// that believes it is master receives nothing, whatever the sender
/// believes; and what the forced command costs against a full shell.
#[test]
fn lab_the_restricted_key_refuses_hostile_requests_and_a_master_receives_nothing() {
    let lab = Lab::get();
    synced(&lab);
    let req = |op: &str| format!("zfs-nfs-replica serve '{{\"v\":1,\"op\":{op}}}'");
    let hostile = [
        "zfs destroy -r zpool1".to_string(),
        "zfs rollback -r zpool1/a@s1".into(),
        "zfs set readonly=off zpool1/a".into(),
        "zfs receive -o origin=zpool1/a@s1 zpool1/x".into(),
        "sh -c 'zfs destroy zpool1/a@s1'".into(),
        format!(
            "{}; zfs destroy zpool1/a@s1",
            req("{\"List\":{\"roots\":[\"zpool1\"]}}")
        ),
        format!(
            "{} && zfs destroy zpool1/a@s1",
            req("{\"List\":{\"roots\":[\"zpool1\"]}}")
        ),
        "zfs-nfs-replica serve $(zfs destroy zpool1/a@s1)".into(),
        "zfs-nfs-replica serve `zfs destroy zpool1/a@s1`".into(),
        req("{\"Rollback\":{\"snapshot\":\"zpool1/a@s1\",\"destroy_newer\":true,\"x\":1}}"),
        req("{\"Recv\":{\"dataset\":\"rpool/data\",\"force\":true}}"),
        req("{\"Hold\":{\"tag\":\"someone-else\",\"snapshots\":[\"zpool1/a@s1\"]}}"),
        req("{\"Release\":{\"tag\":\"zfs-nfs-replica:pve1\",\"snapshots\":[\"zpool1/../x@s1\"]}}"),
        req(
            "{\"Send\":{\"snapshot\":\"zpool1/a@s2\",\"from\":\"Full\",\"raw\":false,\"properties\":false}}",
        ),
        req("{\"RevertReadonly\":{\"datasets\":[\"zpool1/a\"]}}"),
    ];
    let before = lab.zfs_state(B);
    let ssh = "ssh -i /root/.ssh/replica_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
               -o StrictHostKeyChecking=accept-new -o LogLevel=ERROR pve2";
    for h in &hostile {
        let b64 = base64_of(h);
        let out = lab.sh(
            A,
            &format!("c=$(echo {b64} | base64 -d); {ssh} \"$c\" </dev/null"),
        );
        assert_eq!(out.code, Some(6), "{h}: {}", out.all());
        assert_eq!(out.stderr.trim().lines().count(), 1, "{h}: {}", out.stderr);
        assert!(out.stderr.contains("refused"), "{h}: {}", out.stderr);
    }
    assert_eq!(before, lab.zfs_state(B), "a hostile request changed ZFS");

    // B believes it is master (the cluster says the guest runs there); A
    // still believes it is. A stream pushed straight at B is refused by
    // B itself, and nothing arrives.
    lab.place_guest(B);
    // Its pre-start would drop the answer it gave A before (the guest did
    // not really start there in this test).
    lab.ok(B, "rm -f /run/zfs-nfs-replica/role-answer.json");
    let out = lab.sh(
        A,
        &format!(
            "zfs send zpool1/a@s2 | {ssh} \"zfs-nfs-replica serve '{{\\\"v\\\":1,\\\"op\\\":{{\\\"Recv\\\":{{\\\"dataset\\\":\\\"zpool1/pushed\\\",\\\"force\\\":false}}}}}}'\""
        ),
    );
    assert_eq!(out.code, Some(6), "{}", out.all());
    assert!(
        out.stderr.contains("is master by its own checks"),
        "{}",
        out.all()
    );
    assert_eq!(before, lab.zfs_state(B), "the master received something");
    lab.place_guest(A);

    // What the forced command costs: the same idle and incremental runs
    // with the restricted key and with a full shell, interleaved.
    lab.ok(
        A,
        "sed 's#/root/.ssh/replica_ed25519#/root/.ssh/id_ed25519#' /etc/zfs-nfs-replica/config.toml > /root/full-shell.toml",
    );
    let mut times: Vec<(&str, &str, f64)> = Vec::new();
    for rep in 0..2 {
        for (mode, cfg) in [
            ("forced", "/etc/zfs-nfs-replica/config.toml"),
            ("full shell", "/root/full-shell.toml"),
        ] {
            let t = Instant::now();
            let out = lab.replica(A, &format!("-c {cfg} run"));
            assert_eq!(out.code, Some(1), "{mode}: {}", out.all());
            times.push((mode, "idle", t.elapsed().as_secs_f64()));
            lab.ok(
                A,
                &format!(
                    "dd if=/dev/urandom of=/zpool1/a/cost-{rep}-{} bs=1M count=4 status=none; zfs snapshot -r zpool1@cost-{rep}-{}",
                    mode.len(),
                    mode.len()
                ),
            );
            let t = Instant::now();
            let out = lab.replica(A, &format!("-c {cfg} run"));
            assert_eq!(out.code, Some(0), "{mode}: {}", out.all());
            times.push((mode, "incremental", t.elapsed().as_secs_f64()));
        }
    }
    for kind in ["idle", "incremental"] {
        let mean = |mode: &str| {
            let v: Vec<f64> = times
                .iter()
                .filter(|(m, k, _)| *m == mode && *k == kind)
                .map(|t| t.2)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let (f, s) = (mean("forced"), mean("full shell"));
        eprintln!(
            "[lab] {kind} run: forced command {f:.1}s, full shell {s:.1}s (ratio {:.2})",
            f / s
        );
    }
}

fn base64_of(s: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A copy without large blocks cannot send back to one that has them
/// (OpenZFS #18908, #18101: `-L` adds them only when the sending copy has
/// any): the source's large blocks were all deleted before its first
/// snapshot, so the standby's copy never had any. After a failover the new
/// master's run fails that dataset with the reason and the README's remedy;
/// the remedy, done as the README says, brings it back in sync.
#[test]
fn lab_large_blocks_a_copy_without_them_cannot_send_back_and_the_remedy_works() {
    let lab = Lab::get();
    setup(&lab);
    lab.ok(
        A,
        "set -e
         zfs create -o recordsize=1M zpool1/media
         dd if=/dev/urandom of=/zpool1/media/big bs=1M count=2 status=none
         zpool sync zpool1
         rm /zpool1/media/big
         echo small > /zpool1/media/f
         zfs snapshot -r zpool1@s1",
    );
    let out = lab.replica(A, "run --overwrite-empty-target");
    assert_eq!(out.code, Some(0), "{}", out.all());
    // A fails; the guest starts on B, promoted by its hook.
    lab.ok(A, "ip link set eth1 down");
    lab.place_guest(B);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    let hook = lab.replica(B, "hook 103 pre-start");
    lab.ok(A, "ip link set eth1 up");
    assert_eq!(hook.code, Some(0), "{}", hook.all());
    lab.pve.set(|s| s.guest_status = "running".into());
    lab.ok(
        B,
        "echo on-b >> /zpool1/media/f && zfs snapshot -r zpool1@on-b",
    );
    let out = lab.replica(B, "run --pool zpool1");
    assert_eq!(out.code, Some(3), "{}", out.all());
    for want in [
        "requires -L",
        "zpool1/media has large blocks",
        "README: \"Large blocks\"",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    assert_eq!(
        lab.guid(A, "zpool1@on-b"),
        lab.guid(B, "zpool1@on-b"),
        "the rest of the pool replicates"
    );
    // The remedy, on the receiver, exactly as the README gives it.
    lab.ok(
        A,
        "zfs create -o canmount=off zpool1/zfs-nfs-replica-quarantine && \
         zfs create -o canmount=off zpool1/zfs-nfs-replica-quarantine/large-blocks && \
         zfs rename -u zpool1/media zpool1/zfs-nfs-replica-quarantine/large-blocks/media",
    );
    let out = lab.replica(B, "run --accept-size-change zpool1");
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert_eq!(
        lab.guid(A, "zpool1/media@on-b"),
        lab.guid(B, "zpool1/media@on-b")
    );
    // Nothing was destroyed: the old copy waits in the quarantine.
    assert!(
        lab.ok(
            A,
            "zfs list -H -o name -t snapshot -r zpool1/zfs-nfs-replica-quarantine"
        )
        .contains("large-blocks/media@s1"),
    );
    // And the next run is quiet.
    let out = lab.replica(B, "run --pool zpool1");
    assert_eq!(out.code, Some(1), "{}", out.all());
}

/// Three nodes (pve1, pve2, pve3 on one link, as a three-node Proxmox
/// cluster): the master fans out to both standbys, and one standby cut off
/// holds back neither the other nor the next run; `status` and the metrics
/// name every peer. Then pve1 fails and HA starts the guest on the third
/// node, which promotes without it and replicates to pve2; pve1 comes back
/// and converges as a standby with no operator; a planned migration brings
/// the guest home, and all three hold the same snapshots by guid.
#[test]
fn lab_three_nodes_fan_out_fail_over_to_the_third_and_fail_back() {
    const C: &str = "pve3";
    let lab = Lab::get_three();
    lab.fresh_pools();
    lab.place_guest(A);
    for n in [A, B, C] {
        lab.configure(n, "[timeouts]\nstall = \"10s\"\nkill_grace = \"2s\"\n");
        // node_exporter's textfile directory (its package makes it).
        lab.ok(n, "mkdir -p /var/lib/prometheus/node-exporter");
    }
    populate(&lab);
    lab.ok(A, "echo z > /zpool2/z && zfs snapshot -r zpool2@z1");
    let run = |n: &str, args: &str, want: i32| -> String {
        let out = lab.replica(n, args);
        assert_eq!(out.code, Some(want), "{n} {args}: {}", out.all());
        out.all()
    };
    // HA starts the guest on `n`: its pre-start hook runs while the guest
    // is stopped there; the promotion record it leaves.
    let start_on = |n: &str| -> String {
        lab.pve.set(|s| s.guest_status = "stopped".into());
        run(n, "hook 103 pre-start", 0);
        lab.pve.set(|s| s.guest_status = "running".into());
        lab.ok(n, "cat /var/lib/zfs-nfs-replica/last-promotion.json")
    };
    let guids = |n: &str| -> Vec<String> {
        let mut v = all_snapshot_guids(&lab, n, "zpool1");
        v.extend(all_snapshot_guids(&lab, n, "zpool2"));
        v
    };
    // 1. The first sync reaches both standbys in one run.
    run(A, "run --overwrite-empty-target", 0);
    assert_eq!(guids(B), guids(A), "pve2 has every snapshot");
    assert_eq!(guids(C), guids(A), "pve3 has every snapshot");
    for n in [B, C] {
        run(n, "run", 1);
    }

    // 2. pve3 cut off: pve2 still gets the new snapshot in the same run,
    // which ends transient (exit 3) and names the peer it could not reach.
    lab.ok(C, "ip link set eth1 down");
    lab.ok(A, "echo three > /zpool1/a/f3 && zfs snapshot -r zpool1@s3");
    let log = run(A, "run", 3);
    assert!(log.contains("pve3"), "names the unreachable peer: {log}");
    assert_eq!(
        lab.guid(B, "zpool1/a@s3"),
        lab.guid(A, "zpool1/a@s3"),
        "pve2 was not held back: {log}"
    );
    assert_eq!(lab.sh(C, "zfs list zpool1/a@s3").code, Some(1));
    let st: serde_json::Value =
        serde_json::from_str(&lab.ok(A, "zfs-nfs-replica status --json")).unwrap();
    let outcome = |st: &serde_json::Value, pool: &str, peer: &str| -> String {
        st["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pool"] == pool && p["peer"] == peer)
            .unwrap_or_else(|| panic!("{pool} -> {peer} in the status: {st:#}"))["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(outcome(&st, "zpool1", B), "replicated", "{st:#}");
    assert_eq!(outcome(&st, "zpool1", C), "transient-failure", "{st:#}");
    assert_ne!(st["status"], "ok", "a peer behind is not OK: {st:#}");
    // Back on the link: the next run catches pve3 up, pve2 has nothing new.
    lab.ok(C, "ip link set eth1 up");
    run(A, "run", 0);
    assert_eq!(guids(C), guids(A), "pve3 caught up");
    assert_eq!(guids(B), guids(A));
    let st: serde_json::Value =
        serde_json::from_str(&lab.ok(A, "zfs-nfs-replica status --json")).unwrap();
    for pool in ["zpool1", "zpool2"] {
        assert_eq!(outcome(&st, pool, B), "nothing-to-do", "{st:#}");
    }
    assert_eq!(outcome(&st, "zpool1", C), "replicated", "{st:#}");
    assert_eq!(outcome(&st, "zpool2", C), "nothing-to-do", "{st:#}");
    let table = lab.ok(A, "zfs-nfs-replica status");
    for want in ["pool zpool1 -> pve2:zpool1", "pool zpool1 -> pve3:zpool1"] {
        assert!(table.contains(want), "{want}:\n{table}");
    }
    let prom = lab.ok(
        A,
        "cat /var/lib/prometheus/node-exporter/zfs_nfs_replica.prom",
    );
    for peer in [B, C] {
        let want = format!("zfs_nfs_replica_pool_conflicts{{pool=\"zpool1\",peer=\"{peer}\"}} 0");
        assert!(prom.lines().any(|l| l == want), "{want}:\n{prom}");
        let sent =
            format!("zfs_nfs_replica_pool_sent_bytes_total{{pool=\"zpool1\",peer=\"{peer}\"}} ");
        assert!(
            prom.lines()
                .any(|l| l.strip_prefix(&sent).is_some_and(|v| v != "0")),
            "{sent}:\n{prom}"
        );
    }
    for n in [B, C] {
        run(n, "run", 1);
    }

    // 3. pve1 fails (it no longer answers) and HA starts the guest on pve3:
    // its pre-start promotes it without pve1.
    lab.ok(A, "ip link set eth1 down");
    lab.place_guest(C);
    lab.pve.crash(A);
    let rec = start_on(C);
    assert!(
        rec.contains("\"promoted\": true") && rec.contains("unreachable"),
        "{rec}"
    );
    assert_eq!(
        lab.ok(C, "zfs get -H -o value readonly zpool1/a"),
        "off\n",
        "pve3 is writable"
    );
    lab.ok(
        C,
        "echo on-pve3 > /zpool1/a/b/on-c && zfs snapshot -r zpool1@on-c && zfs snapshot -r zpool2@on-c",
    );
    // pve2 follows its new master at once; pve1, still away, waits.
    let log = run(C, "run", 3);
    assert_eq!(
        lab.guid(B, "zpool1/a/b@on-c"),
        lab.guid(C, "zpool1/a/b@on-c"),
        "{log}"
    );
    run(B, "run", 1);

    // 4. pve1 is back: a standby of pve3 from its next timer run, and the
    // run after that on pve3 brings it up to date; nobody resolves anything.
    lab.ok(A, "ip link set eth1 up");
    lab.pve.set(|s| {
        s.nodes.get_mut(A).unwrap().online = true;
        s.crm_state = "started".into();
    });
    run(A, "run", 1);
    let st: serde_json::Value =
        serde_json::from_str(&lab.ok(A, "zfs-nfs-replica status --json")).unwrap();
    assert_eq!(st["role"]["role"], "standby", "{st:#}");
    assert_eq!(st["role"]["master"], C, "{st:#}");
    let log = run(C, "run", 0);
    for n in [A, B] {
        assert_eq!(guids(n), guids(C), "{n} in sync with pve3: {log}");
    }

    // 5. Fail back: a planned migration pve3 -> pve1. The old master hands
    // its last writes over; then every node runs as its timer would.
    lab.ok(C, "echo last-on-c > /zpool1/a/last && sync");
    let want = sha(&lab, C, "zpool1/a/last zpool1/a/b/on-c");
    lab.place_guest(A);
    lab.pve.set(|s| s.guest_status = "stopped".into());
    run(C, "hook 103 post-stop", 0);
    let rec = start_on(A);
    assert!(
        rec.contains("handover from pve3") && rec.contains("\"promoted\": true"),
        "{rec}"
    );
    assert_eq!(
        sha(&lab, A, "zpool1/a/last zpool1/a/b/on-c"),
        want,
        "pve1 serves every write made on pve3"
    );
    let log = run(A, "run", 0);
    for n in [B, C] {
        assert_eq!(guids(n), guids(A), "{n} in sync with pve1: {log}");
        run(n, "run", 1);
    }
    run(A, "run", 1);
    let st: serde_json::Value =
        serde_json::from_str(&lab.ok(A, "zfs-nfs-replica status --json")).unwrap();
    assert_eq!(st["status"], "ok", "{st:#}");
    for peer in [B, C] {
        for pool in ["zpool1", "zpool2"] {
            assert_eq!(outcome(&st, pool, peer), "nothing-to-do", "{st:#}");
        }
    }
    // Holds: pve1 holds the base for each standby, each standby for pve1,
    // and the holds pve3 took as master are gone (else their snapshots
    // could never be pruned).
    for (n, tags) in [
        (A, &["zfs-nfs-replica:pve2", "zfs-nfs-replica:pve3"][..]),
        (B, &["zfs-nfs-replica:pve1"][..]),
        (C, &["zfs-nfs-replica:pve1"][..]),
    ] {
        let h = holds(&lab, n);
        let mut seen: Vec<&str> = h.lines().filter_map(|l| l.split('\t').nth(1)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, tags, "holds on {n}:\n{h}");
    }
}
