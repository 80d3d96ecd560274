//! The engine's orchestration, driven by a scripted runner: which commands it
//! issues, in which order, and what it refuses. The listings have the exact
//! shape of `zfs list -H -p` output; real ZFS behaviour is the lab's job.

use std::sync::Mutex;
use std::time::Duration;

use zfs_nfs_replica::cmdline::Cmd;
use zfs_nfs_replica::engine::{Engine, HoldHint, PoolJob, Settings};
use zfs_nfs_replica::progress_bar::Silent;
use zfs_nfs_replica::report::{DatasetResult, Outcome};
use zfs_nfs_replica::runner::{Output, PipeOutput, PipeSpec, RunError, Runner};
use zfs_nfs_replica::ssh::Peer;

#[derive(Default)]
struct Fake {
    local_list: String,
    remote_list: String,
    local_holds: String,
    remote_holds: String,
    /// A receive into a target whose name contains this fails.
    fail_recv: Option<String>,
    /// A remote `zfs list` naming this root fails as for a missing pool.
    missing_remote: Option<String>,
    /// Dataset rows the receives of the run create on the receiver.
    remote_received: String,
    /// `zfs hold` fails on this side ("local" or "remote").
    fail_hold: Option<String>,
    /// The peer refuses the datasets-only listing (an older version).
    old_peer: bool,
    /// `zfs get` finds another snapshot under this name (destroyed and
    /// made again since the listing).
    reused: Option<String>,
    /// This side has no `snapshots_changed` (OpenZFS 2.1): "local"/"remote".
    no_snapshots_changed: Option<String>,
    log: Mutex<Vec<String>>,
}

/// What `zfs list -t filesystem,volume -o name,guid,createtxg,origin,
/// snapshots_changed` prints of a full listing: a value that moves with
/// the dataset's set of snapshots, `-` for one that never had any.
fn changes_of(full: &str) -> String {
    let mut out = String::new();
    for l in full.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f[1] == "snapshot" {
            continue;
        }
        let prefix = format!("{}@", f[0]);
        let mut any = false;
        let mut h: u64 = 0;
        for s in full.lines().filter(|s| s.starts_with(&prefix)) {
            any = true;
            let g: u64 = s.split('\t').nth(2).unwrap().parse().unwrap();
            h = h.wrapping_add(g.wrapping_mul(2_654_435_761));
        }
        let changed = if any {
            (1_700_000_000 + h % 100_000_000).to_string()
        } else {
            "-".into()
        };
        out += &format!("{}\t{}\t{}\t-\t{changed}\n", f[0], f[2], f[3]);
    }
    out
}

/// What `zfs list -t snapshot -d 1 -o name,guid,createtxg DATASETS` prints.
fn snapshots_of(full: &str, datasets: &[String]) -> String {
    let mut out = String::new();
    for d in datasets {
        let prefix = format!("{d}@");
        for l in full.lines().filter(|l| l.starts_with(&prefix)) {
            let f: Vec<&str> = l.split('\t').collect();
            out += &format!("{}\t{}\t{}\n", f[0], f[2], f[3]);
        }
    }
    out
}

/// What `zfs list -o name,guid,createtxg` prints of a full listing.
fn fast_of(full: &str) -> String {
    full.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("{}\t{}\t{}\n", f[0], f[2], f[3])
        })
        .collect()
}

/// What `zfs get -H -p -o name,property,value DETAIL_PROPS names` prints
/// of a full listing: every name's rows, or exit 1 naming one that does
/// not exist (after printing the others, as zfs does).
fn get_of(full: &str, names: &[String], reused: Option<&str>) -> Output {
    let mut out = String::new();
    let mut err = String::new();
    for n in names {
        let Some(l) = full.lines().find(|l| l.split('\t').next() == Some(n)) else {
            err += &format!("cannot open '{n}': dataset does not exist\n");
            continue;
        };
        let f: Vec<&str> = l.split('\t').collect();
        let guid = if reused == Some(n.as_str()) {
            format!("{}0", f[2])
        } else {
            f[2].to_string()
        };
        // The listing's columns but the name: DETAIL_PROPS, in order.
        let values = [
            f[1],
            guid.as_str(),
            f[3],
            f[4],
            f[5],
            f[6],
            f[7],
            f[8],
            f[9],
            f[10],
        ];
        for (p, v) in zfs_nfs_replica::zfs::details::DETAIL_PROPS
            .iter()
            .zip(values)
        {
            out += &format!("{n}\t{p}\t{v}\n");
        }
    }
    Output {
        status: exit(if err.is_empty() { 0 } else { 1 }),
        stdout: out,
        stderr: err,
    }
}

fn exit(code: i32) -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(code << 8)
}

impl Fake {
    /// `local: zfs ...` or `remote: zfs ...`, as the command would run there.
    fn describe(cmd: &Cmd) -> String {
        if cmd.program == "ssh" {
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

impl Runner for Fake {
    async fn output(&self, cmd: &Cmd, _timeout: Duration) -> Result<Output, RunError> {
        let d = Self::describe(cmd);
        self.log.lock().unwrap().push(d.clone());
        let ok = |stdout: &str| {
            Ok(Output {
                status: exit(0),
                stdout: stdout.into(),
                stderr: String::new(),
            })
        };
        let (side, inner) = d.split_once(": ").unwrap();
        if let Some(m) = &self.missing_remote
            && side == "remote"
            && inner.starts_with("zfs list ")
            && inner.split(' ').any(|w| w == m)
        {
            return Ok(Output {
                status: exit(1),
                stdout: String::new(),
                stderr: format!("cannot open '{m}': dataset does not exist\n"),
            });
        }
        if self.old_peer
            && side == "remote"
            && (inner.contains(" -t filesystem,volume ")
                || inner.contains(" -o name,guid,createtxg ")
                || inner.starts_with("zfs get "))
        {
            // What a peer's `serve` from before the datasets listing answers.
            return Ok(Output {
                status: exit(1),
                stdout: String::new(),
                stderr: "zfs-nfs-replica serve: refused: unknown request\n".into(),
            });
        }
        let full = if side == "local" {
            &self.local_list
        } else {
            &self.remote_list
        };
        if inner.starts_with("zfs list ") && inner.contains(",snapshots_changed ") {
            if self.no_snapshots_changed.as_deref() == Some(side) {
                return Ok(Output {
                    status: exit(2),
                    stdout: String::new(),
                    stderr: "bad property list: invalid property 'snapshots_changed'\n".into(),
                });
            }
            return ok(&changes_of(full));
        }
        if inner.starts_with("zfs list ") && inner.contains(" -t snapshot -d 1 ") {
            let datasets = if cmd.program == "ssh" {
                match zfs_nfs_replica::serve::parse_line(cmd.args.last().unwrap()) {
                    Ok(zfs_nfs_replica::zfs::Op::ListSnapshotsOf { datasets }) => datasets,
                    other => panic!("{other:?}"),
                }
            } else {
                cmd.args[9..].to_vec()
            };
            return ok(&snapshots_of(full, &datasets));
        }
        let details = if cmd.program == "ssh" {
            match zfs_nfs_replica::serve::parse_line(cmd.args.last().unwrap()) {
                Ok(zfs_nfs_replica::zfs::Op::Details { names }) => Some(names),
                _ => None,
            }
        } else {
            (cmd.args.first().map(String::as_str) == Some("get")).then(|| cmd.args[6..].to_vec())
        };
        if let Some(names) = details {
            return Ok(get_of(full, &names, self.reused.as_deref()));
        }
        if inner.starts_with("zfs list ") && inner.contains(" -o name,guid,createtxg ") {
            return ok(&fast_of(full));
        }
        if inner.starts_with("zfs list ") && inner.contains(" -t filesystem,volume ") {
            // The datasets alone, as they are after this run's receives.
            let mut all = if side == "local" {
                self.local_list.clone()
            } else {
                self.remote_list.clone() + &self.remote_received
            };
            all = all
                .lines()
                .filter(|l| l.split('\t').nth(1) != Some("snapshot"))
                .map(|l| format!("{l}\n"))
                .collect();
            ok(&all)
        } else if inner.starts_with("zfs list ") {
            ok(if side == "local" {
                &self.local_list
            } else {
                &self.remote_list
            })
        } else if inner.starts_with("zfs holds ") {
            ok(if side == "local" {
                &self.local_holds
            } else {
                &self.remote_holds
            })
        } else if inner.starts_with("zfs hold ") && self.fail_hold.as_deref() == Some(side) {
            Ok(Output {
                status: exit(1),
                stdout: String::new(),
                stderr: "cannot hold snapshot: out of space\n".into(),
            })
        } else if inner.starts_with("zfs hold ") || inner.starts_with("zfs release ") {
            ok("")
        } else {
            Ok(Output {
                status: exit(1),
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
        on_send_line("00:00:01\t4096\tx@y");
        if let Some(f) = &self.fail_recv
            && r.contains(f.as_str())
        {
            return Err(RunError::Failed {
                cmd: r,
                status: "exit status: 1".into(),
                stderr: "cannot receive: out of space".into(),
            });
        }
        Ok(PipeOutput {
            send_stderr: String::new(),
            recv_stderr: String::new(),
            elapsed: Duration::from_millis(10),
        })
    }
}

/// `zfs list -H -p -o name,type,guid,createtxg,creation,used,referenced,written,userrefs,receive_resume_token,encryption`
fn fs(name: &str, written: u64) -> String {
    format!(
        "{name}\tfilesystem\t{}\t1\t1700000000\t1000\t1000\t{written}\t-\t-\toff\n",
        name.len()
    )
}
fn snap(ds: &str, name: &str, guid: u64, userrefs: u64) -> String {
    format!(
        "{ds}@{name}\tsnapshot\t{guid}\t{guid}\t{}\t0\t1000\t100\t{userrefs}\t-\toff\n",
        1_700_000_000 + guid
    )
}

fn settings(dry_run: bool) -> Settings {
    Settings {
        local_node: "pve1".into(),
        cluster_nodes: vec!["pve1".into(), "pve2".into(), "pve3".into()],
        hold_tag: "zfs-nfs-replica".into(),
        send_properties: true,
        command_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        transfer_timeout: Duration::from_secs(5),
        dry_run,
        overwrite_empty: false,
        kept: None,
    }
}

fn job() -> PoolJob {
    PoolJob {
        source: "zpool1".into(),
        target: "zpool1".into(),
        exclude: vec![],
        guard: None,
    }
}

fn run(fake: &Fake, dry_run: bool) -> (zfs_nfs_replica::report::PoolReport, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = Peer::detached("pve2", "/nonexistent/ctl".into());
    let s = settings(dry_run);
    let mut silent = Silent;
    let mut engine = Engine::new(fake, &s, &mut silent);
    let report = rt.block_on(engine.replicate(&job(), &peer));
    (report, engine.shown.clone())
}

/// Source: root and `data` have new snapshots, `new` is absent on the
/// receiver, `bad` diverged (with a child), `idle` is in sync.
fn busy_pool() -> Fake {
    let mut l = String::new();
    let mut r = String::new();
    l += &fs("zpool1", 0);
    l += &snap("zpool1", "a", 1, 1);
    l += &snap("zpool1", "b", 2, 0);
    l += &fs("zpool1/bad", 0);
    l += &snap("zpool1/bad", "a", 10, 1);
    l += &fs("zpool1/bad/child", 0);
    l += &snap("zpool1/bad/child", "a", 20, 0);
    l += &fs("zpool1/my data", 0);
    l += &snap("zpool1/my data", "a", 30, 1);
    l += &snap("zpool1/my data", "b", 31, 0);
    l += &fs("zpool1/new", 0);
    l += &snap("zpool1/new", "a", 40, 0);
    l += &snap("zpool1/new", "b", 41, 0);
    r += &fs("zpool1", 0);
    r += &snap("zpool1", "a", 1, 1);
    r += &fs("zpool1/bad", 0);
    r += &snap("zpool1/bad", "a", 10, 1);
    r += &snap("zpool1/bad", "written-on-standby", 11, 0);
    r += &fs("zpool1/bad/child", 0);
    r += &snap("zpool1/bad/child", "a", 20, 0);
    r += &fs("zpool1/my data", 0);
    r += &snap("zpool1/my data", "a", 30, 1);
    r += &fs("zpool1/only-here", 0);
    Fake {
        local_list: l,
        remote_list: r,
        remote_received: fs("zpool1/new", 0),
        local_holds: "zpool1@a\tzfs-nfs-replica:pve2\tx\nzpool1/bad@a\tzfs-nfs-replica:pve2\tx\nzpool1/my data@a\tzfs-nfs-replica:pve2\tx\n".into(),
        remote_holds: "zpool1@a\tzfs-nfs-replica:pve1\tx\nzpool1/bad@a\tzfs-nfs-replica:pve1\tx\nzpool1/my data@a\tsomeone-else\tx\n".into(),
        ..Default::default()
    }
}

#[test]
fn dry_run_runs_only_read_only_commands_and_shows_every_step() {
    let fake = busy_pool();
    let (report, shown) = run(&fake, true);
    for c in fake.log() {
        assert!(
            c.contains(": zfs list ") || c.contains(": zfs holds "),
            "dry-run ran a changing command: {c}"
        );
    }
    let text = shown.join("\n");
    assert!(text.contains("zfs send -L -c -e -P -v -p -I zpool1@a zpool1@b | [pve2] zfs receive -s -u -o readonly=on zpool1"), "{text}");
    assert!(text.contains("zfs send -L -c -e -P -v -p zpool1/new@a | [pve2] zfs receive -s -u -o readonly=on zpool1/new"), "{text}");
    assert!(text.contains("-I zpool1/new@a zpool1/new@b"), "{text}");
    assert!(text.contains("CONFLICT diverged"), "{text}");
    assert!(
        text.contains("@written-on-standby"),
        "the evidence is shown: {text}"
    );
    assert!(
        text.contains("zpool1/bad/child") && text.contains("blocked by zpool1/bad"),
        "{text}"
    );
    assert!(
        text.contains("zpool1/only-here") && text.contains("never destroyed"),
        "{text}"
    );
    assert!(
        text.contains("holds: zfs hold zfs-nfs-replica:pve2 zpool1@b"),
        "{text}"
    );
    assert!(
        text.contains("holds: [pve2] zfs release zfs-nfs-replica:pve1 zpool1@a"),
        "{text}"
    );
    assert_eq!(
        report.outcome,
        Outcome::Refused,
        "a conflict needs the operator"
    );
}

#[test]
fn run_sends_in_order_skips_the_conflicting_subtree_and_moves_holds() {
    let fake = busy_pool();
    let (report, _) = run(&fake, false);
    let log = fake.log();
    let transfers: Vec<&String> = log.iter().filter(|c| c.contains(" | ")).collect();
    assert_eq!(transfers.len(), 4, "{transfers:#?}");
    assert!(transfers[0].contains("-I zpool1@a zpool1@b"));
    assert!(transfers[1].contains("-I 'zpool1/my data@a' 'zpool1/my data@b'"));
    assert!(
        transfers[2].ends_with("zfs receive -s -u -o readonly=on zpool1/new")
            && !transfers[2].contains("-I")
    );
    assert!(transfers[3].contains("-I zpool1/new@a zpool1/new@b"));
    assert!(
        !log.iter()
            .any(|c| c.contains("zpool1/bad") && c.contains(" | ")),
        "nothing sent for the diverged subtree"
    );
    // One hold and one release per side, hold first.
    let pos = |p: &str| {
        log.iter()
            .position(|c| c.starts_with(p))
            .unwrap_or_else(|| panic!("no `{p}` in {log:#?}"))
    };
    assert!(pos("local: zfs hold ") < pos("local: zfs release "));
    assert!(pos("remote: zfs hold ") < pos("remote: zfs release "));
    let hold = &log[pos("local: zfs hold ")];
    assert_eq!(
        hold,
        "local: zfs hold zfs-nfs-replica:pve2 zpool1@b 'zpool1/my data@b' zpool1/new@b"
    );
    assert_eq!(
        log[pos("local: zfs release ")],
        "local: zfs release zfs-nfs-replica:pve2 'zpool1/my data@a' zpool1@a"
    );
    // Someone else's hold on the receiver is left alone; the diverged dataset keeps its hold.
    assert_eq!(
        log[pos("remote: zfs release ")],
        "remote: zfs release zfs-nfs-replica:pve1 zpool1@a"
    );
    assert_eq!(report.outcome, Outcome::Refused);
    let sent = report
        .datasets
        .iter()
        .filter(|d| matches!(d.result, DatasetResult::Sent { .. }))
        .count();
    assert_eq!(sent, 3);
    assert_eq!(report.receiver_only, ["zpool1/only-here"]);
    // After the transfers, the datasets alone are listed (sizes), once per
    // side: what the receiver now holds comes from the plan, not from
    // listing every snapshot again.
    let lists: Vec<&String> = log.iter().filter(|c| c.contains(": zfs list ")).collect();
    assert_eq!(lists.len(), 4, "{lists:#?}");
    assert!(
        lists[..2]
            .iter()
            .all(|c| c.contains("-t filesystem,volume,snapshot "))
    );
    assert!(
        lists[2..]
            .iter()
            .all(|c| c.contains("-t filesystem,volume -r "))
    );
    assert!(
        pos("remote: zfs release ")
            < log
                .iter()
                .rposition(|c| c.starts_with("remote: zfs list "))
                .unwrap(),
        "sizes are listed once everything else is done"
    );
    let (_, dst) = report.listings.as_ref().expect("listings after the run");
    let names = |d: &str| -> Vec<String> {
        dst.datasets[d]
            .snapshots
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    };
    assert_eq!(names("zpool1"), ["a", "b"]);
    assert_eq!(
        names("zpool1/new"),
        ["a", "b"],
        "a new dataset as the stream made it"
    );
    assert_eq!(names("zpool1/my data"), ["a", "b"]);
    assert_eq!(
        names("zpool1/bad"),
        ["a", "written-on-standby"],
        "the refused dataset as it was"
    );
}

#[test]
fn holds_move_on_both_sides_at_once_and_nothing_is_released_unless_every_hold_took() {
    for side in ["local", "remote"] {
        let fake = Fake {
            fail_hold: Some(side.into()),
            ..busy_pool()
        };
        let (report, _) = run(&fake, false);
        let log = fake.log();
        assert_eq!(
            log.iter().filter(|c| c.contains(": zfs hold ")).count(),
            2,
            "both sides' holds are asked for: {log:#?}"
        );
        assert!(
            !log.iter().any(|c| c.contains(": zfs release ")),
            "the hold failed on {side}: every old base stays held: {log:#?}"
        );
        assert!(
            report
                .error
                .as_deref()
                .is_some_and(|e| e.contains("out of space")),
            "{report:#?}"
        );
    }
}

/// Three nodes: the standby still carries the holds an earlier master
/// (pve3) put there. Once this master's hold is on a dataset's new base,
/// the earlier master's hold on that dataset is released (after ours, so
/// the base is never unprotected); a dataset refused this run, and holds
/// of any other tag, are left alone.
#[test]
fn an_earlier_masters_holds_on_the_standby_go_once_ours_is_on_the_new_base() {
    let fake = Fake {
        remote_holds: "zpool1@a\tzfs-nfs-replica:pve1\tx\nzpool1@a\tzfs-nfs-replica:pve3\tx\nzpool1/bad@a\tzfs-nfs-replica:pve3\tx\nzpool1/my data@a\tzfs-nfs-replica-quarantine\tx\n".into(),
        ..busy_pool()
    };
    let (_, shown) = run(&fake, true);
    let text = shown.join("\n");
    assert!(
        text.contains("holds: [pve2] zfs release zfs-nfs-replica:pve3 zpool1@a"),
        "shown in the dry run: {text}"
    );
    let fake = Fake {
        remote_holds: fake.remote_holds.clone(),
        ..busy_pool()
    };
    run(&fake, false);
    let log = fake.log();
    let at = |what: &str| log.iter().position(|c| c.contains(what));
    let released = at("zfs release zfs-nfs-replica:pve3 zpool1@a")
        .unwrap_or_else(|| panic!("the earlier master's hold is released: {log:#?}"));
    let held = at("zfs hold zfs-nfs-replica:pve1 zpool1@b").expect("ours on the new base");
    assert!(held < released, "ours first: {log:#?}");
    for c in &log {
        assert!(
            !(c.contains("zfs release") && (c.contains("bad@a") || c.contains("quarantine"))),
            "a refused dataset's holds, and other tags, stay: {c}"
        );
    }
}

/// Listings of every snapshot (not of the datasets alone), both sides.
fn full_listings(fake: &Fake) -> usize {
    fake.log()
        .iter()
        .filter(|c| c.contains(": zfs list ") && c.contains("-t filesystem,volume,snapshot "))
        .count()
}

#[test]
fn a_peer_that_cannot_list_datasets_alone_is_listed_again_in_full() {
    let fake = Fake {
        old_peer: true,
        ..busy_pool()
    };
    let (report, _) = run(&fake, false);
    assert_eq!(full_listings(&fake), 4, "{:#?}", fake.log());
    assert!(
        report.error.is_none() && report.listings.is_some(),
        "{report:#?}"
    );
}

#[test]
fn an_idle_cycle_is_two_listings_and_a_holds_check_per_side() {
    let mut l = fs("zpool1", 0);
    l += &snap("zpool1", "a", 1, 1);
    l += &fs("zpool1/data", 0);
    l += &snap("zpool1/data", "a", 2, 1);
    let fake = Fake {
        local_list: l.clone(),
        remote_list: l,
        local_holds: "zpool1@a\tzfs-nfs-replica:pve2\tx\nzpool1/data@a\tzfs-nfs-replica:pve2\tx\n"
            .into(),
        remote_holds: "zpool1@a\tzfs-nfs-replica:pve1\tx\nzpool1/data@a\tzfs-nfs-replica:pve1\tx\n"
            .into(),
        ..Default::default()
    };
    let (report, _) = run(&fake, false);
    let log = fake.log();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert_eq!(log.iter().filter(|c| c.starts_with("remote:")).count(), 2);
    assert_eq!(report.outcome, Outcome::NothingToDo);
}

#[test]
fn a_failed_transfer_skips_the_subtree_and_is_transient() {
    let mut l = fs("zpool1", 0);
    l += &snap("zpool1", "a", 1, 0);
    l += &fs("zpool1/p", 0);
    l += &snap("zpool1/p", "a", 2, 0);
    l += &fs("zpool1/p/c", 0);
    l += &snap("zpool1/p/c", "a", 3, 0);
    l += &fs("zpool1/q", 0);
    l += &snap("zpool1/q", "a", 4, 0);
    let mut r = fs("zpool1", 0);
    r += &snap("zpool1", "a", 1, 0);
    let fake = Fake {
        local_list: l,
        remote_list: r,
        fail_recv: Some("zpool1/p".into()),
        ..Default::default()
    };
    let (report, _) = run(&fake, false);
    let res = |n: &str| {
        &report
            .datasets
            .iter()
            .find(|d| d.source == n)
            .unwrap()
            .result
    };
    assert!(matches!(res("zpool1/p"), DatasetResult::Failed(m) if m.contains("out of space")));
    assert!(
        matches!(res("zpool1/p/c"), DatasetResult::Skipped(m) if m.contains("zpool1/p failed"))
    );
    assert!(
        matches!(res("zpool1/q"), DatasetResult::Sent { .. }),
        "other subtrees go on"
    );
    assert_eq!(report.outcome, Outcome::Transient);
    // A stream that failed may have landed part of its snapshots: both
    // sides are listed again in full, not guessed from the plan.
    assert_eq!(full_listings(&fake), 4, "{:#?}", fake.log());
}

#[test]
fn garbled_listing_fails_the_pool_with_the_command_named() {
    let fake = Fake {
        local_list: fs("zpool1", 0),
        remote_list: "zpool1\tfilesystem\tgarbage\n".into(),
        ..Default::default()
    };
    let (report, _) = run(&fake, false);
    let e = report.error.unwrap();
    assert!(e.contains("[pve2] zfs list") && e.contains("line 1"), "{e}");
    assert_eq!(report.outcome, Outcome::Refused);
    assert!(
        fake.log().iter().all(|c| c.contains("zfs list")),
        "nothing else was attempted"
    );
}

/// Two pools in sync, both sides holding every base.
fn two_pools() -> Fake {
    let mut l = String::new();
    let mut lh = String::new();
    let mut rh = String::new();
    for p in ["zpool1", "zpool2"] {
        l += &fs(p, 0);
        l += &snap(p, "a", p.len() as u64 * 10 + 1, 1);
        l += &fs(&format!("{p}/data"), 0);
        l += &snap(&format!("{p}/data"), "a", p.len() as u64 * 10 + 2, 1);
        for ds in [p.to_string(), format!("{p}/data")] {
            lh += &format!("{ds}@a\tzfs-nfs-replica:pve2\tx\n");
            rh += &format!("{ds}@a\tzfs-nfs-replica:pve1\tx\n");
        }
    }
    Fake {
        local_list: l.clone(),
        remote_list: l,
        local_holds: lh,
        remote_holds: rh,
        ..Default::default()
    }
}

fn jobs() -> Vec<PoolJob> {
    ["zpool1", "zpool2"]
        .iter()
        .map(|p| PoolJob {
            source: p.to_string(),
            target: p.to_string(),
            exclude: vec![],
            guard: None,
        })
        .collect()
}

fn run_many(fake: &Fake, hint: &HoldHint) -> Vec<zfs_nfs_replica::report::PoolReport> {
    run_with(fake, &jobs(), hint, &settings(false))
}

#[test]
fn several_pools_are_one_listing_and_one_holds_check_per_side() {
    let fake = two_pools();
    let reports = run_many(&fake, &HoldHint::default());
    let log = fake.log();
    assert_eq!(log.len(), 4, "{log:#?}");
    let lists: Vec<&String> = log.iter().filter(|c| c.contains("zfs list ")).collect();
    assert_eq!(lists.len(), 2);
    assert!(
        lists.iter().all(|c| c.ends_with(" zpool1 zpool2")),
        "{lists:#?}"
    );
    assert_eq!(log.iter().filter(|c| c.starts_with("remote:")).count(), 2);
    assert!(
        reports
            .iter()
            .all(|r| r.outcome == Outcome::NothingToDo && r.error.is_none())
    );
    assert_eq!(reports[1].pool, "zpool2");
    assert_eq!(
        reports[1].datasets.len(),
        2,
        "each pool gets only its datasets"
    );
}

#[test]
fn the_last_runs_holds_are_asked_about_during_the_listings() {
    // The hint names exactly the held snapshots: no second holds check.
    let fake = two_pools();
    let held: Vec<String> = ["zpool1", "zpool1/data", "zpool2", "zpool2/data"]
        .iter()
        .map(|d| format!("{d}@a"))
        .collect();
    let hint = HoldHint {
        local: held.clone(),
        remote: held,
        complete: false,
    };
    let reports = run_many(&fake, &hint);
    assert_eq!(fake.log().len(), 4, "{:#?}", fake.log());
    assert!(reports.iter().all(|r| r.error.is_none()));
    // A stale hint (a base moved since): asked again, and nothing is lost.
    let fake = two_pools();
    let stale = HoldHint {
        local: vec!["zpool1@old".into()],
        remote: vec!["zpool1@old".into()],
        complete: false,
    };
    let reports = run_many(&fake, &stale);
    let log = fake.log();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert_eq!(
        log.iter().filter(|c| c.contains("zfs holds")).count(),
        4,
        "the speculative pair, then the real pair"
    );
    assert!(
        !log.iter()
            .any(|c| c.contains("zfs hold ") || c.contains("zfs release ")),
        "the holds are in place: nothing moved"
    );
    assert!(reports.iter().all(|r| r.error.is_none()));
}

#[test]
fn a_batch_listing_failure_falls_back_to_one_listing_per_pool() {
    let fake = Fake {
        missing_remote: Some("zpool2".into()),
        ..two_pools()
    };
    let reports = run_many(&fake, &HoldHint::default());
    assert_eq!(
        reports[0].outcome,
        Outcome::NothingToDo,
        "{:?}",
        reports[0].error
    );
    assert!(reports[0].error.is_none());
    let e = reports[1].error.as_deref().unwrap();
    assert!(e.contains("[pve2] zfs list") && e.contains("zpool2"), "{e}");
    assert_eq!(
        reports[1].outcome,
        Outcome::Refused,
        "a missing pool needs the operator"
    );
}

#[test]
fn a_peer_that_may_not_be_written_into_gets_nothing() {
    let fake = two_pools();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = Peer::detached("pve2", "/nonexistent/ctl".into());
    let s = settings(false);
    let mut silent = Silent;
    let mut engine = Engine::new(&fake, &s, &mut silent);
    let reps = rt.block_on(engine.replicate_many(
        &jobs(),
        &peer,
        &HoldHint::default(),
        std::future::ready(Err(
            "pve2 says it is master itself (its own checks): not writing into it".to_string(),
        )),
    ));
    assert_eq!(reps.len(), 2);
    for r in &reps {
        assert_eq!(r.outcome, zfs_nfs_replica::report::Outcome::Refused);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .contains("says it is master itself")
        );
    }
    // Only the listings and hold queries (read-only) ran: nothing was sent,
    // held or released.
    for c in fake.log() {
        assert!(
            c.contains(": zfs list ") || c.contains(": zfs holds "),
            "{c}"
        );
    }
}

fn run_hinted(
    fake: &Fake,
    jobs: &[PoolJob],
    hint: &HoldHint,
) -> Vec<zfs_nfs_replica::report::PoolReport> {
    run_with(fake, jobs, hint, &settings(false))
}

/// Every pool of `jobs` to pve2, with these settings.
fn run_with(
    fake: &Fake,
    jobs: &[PoolJob],
    hint: &HoldHint,
    s: &Settings,
) -> Vec<zfs_nfs_replica::report::PoolReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = Peer::detached("pve2", "/nonexistent/ctl".into());
    let mut silent = Silent;
    let mut engine = Engine::new(fake, s, &mut silent);
    rt.block_on(engine.replicate_many(jobs, &peer, hint, std::future::ready(Ok(()))))
}

/// The last run's holds, and a recent full listing behind them.
fn complete_hint(held: &[&str]) -> HoldHint {
    let held: Vec<String> = held.iter().map(|s| s.to_string()).collect();
    HoldHint {
        local: held.clone(),
        remote: held,
        complete: true,
    }
}

/// Each dataset's result, without the time its transfer took.
fn decisions(r: &zfs_nfs_replica::report::PoolReport) -> Vec<String> {
    r.datasets
        .iter()
        .map(|d| match &d.result {
            DatasetResult::Sent { bytes, .. } => format!("{}: sent {bytes}", d.source),
            other => format!("{}: {other:?}", d.source),
        })
        .collect()
}

/// Listings of whole trees (snapshots included) whose columns start so.
fn tree_listings(log: &[String], columns: &str) -> usize {
    let form = format!(" -t filesystem,volume,snapshot -r -o {columns}");
    log.iter().filter(|c| c.contains(&form)).count()
}

fn everything_listings(log: &[String]) -> usize {
    tree_listings(log, "name,type,")
}

#[test]
fn a_complete_hint_lists_names_guids_and_txgs_and_asks_the_rest_of_a_few() {
    let fake = two_pools();
    let hint = complete_hint(&["zpool1@a", "zpool1/data@a", "zpool2@a", "zpool2/data@a"]);
    let reports = run_many(&fake, &hint);
    let log = fake.log();
    // One fast listing and one `zfs get` per side, the holds asked during
    // the listings, and nothing else.
    assert_eq!(log.len(), 6, "{log:#?}");
    assert_eq!(everything_listings(&log), 0, "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|c| c.contains(" -o name,guid,createtxg zpool1 zpool2"))
            .count(),
        2
    );
    let gets: Vec<&String> = log.iter().filter(|c| c.contains(": zfs get ")).collect();
    assert_eq!(gets.len(), 2);
    assert!(
        gets[0].ends_with(
            " zpool1 zpool1/data zpool1/data@a zpool1@a zpool2 zpool2/data zpool2/data@a zpool2@a"
        ),
        "{gets:#?}"
    );
    for r in &reports {
        assert_eq!(r.outcome, Outcome::NothingToDo, "{:?}", r.error);
        let (s, d) = r.listings.as_ref().unwrap();
        assert!(s.partial && d.partial);
        // What was asked is exact: the newest's creation and holds.
        let a = &s.datasets[&r.pool].snapshots[0];
        assert_eq!((a.creation, a.userrefs), (1_700_000_000 + a.guid as i64, 1));
    }
}

/// Root: `a` (held on both sides), `b`, `c` new on the source.
fn behind() -> Fake {
    let mut l = fs("zpool1", 0);
    l += &snap("zpool1", "a", 1, 1);
    l += &snap("zpool1", "b", 2, 0);
    l += &snap("zpool1", "c", 3, 0);
    let mut r = fs("zpool1", 0);
    r += &snap("zpool1", "a", 1, 1);
    Fake {
        local_list: l,
        remote_list: r,
        local_holds: "zpool1@a\tzfs-nfs-replica:pve2\tx\n".into(),
        remote_holds: "zpool1@a\tzfs-nfs-replica:pve1\tx\n".into(),
        ..Default::default()
    }
}

#[test]
fn an_incremental_from_a_fast_listing_sends_and_moves_the_holds_as_a_full_one_does() {
    let fast = behind();
    let full = behind();
    let r_fast = run_hinted(&fast, &[job()], &complete_hint(&["zpool1@a"]));
    let r_full = run_hinted(&full, &[job()], &HoldHint::default());
    let (lf, ll) = (fast.log(), full.log());
    assert_eq!(everything_listings(&lf), 0, "{lf:#?}");
    assert_eq!(everything_listings(&ll), 2, "{ll:#?}");
    let acts = |log: &[String]| -> Vec<String> {
        log.iter()
            .filter(|c| {
                c.contains(" | ") || c.contains(": zfs hold ") || c.contains(": zfs release ")
            })
            .cloned()
            .collect()
    };
    assert_eq!(acts(&lf), acts(&ll));
    assert!(acts(&lf)[0].contains("-I zpool1@a zpool1@c"), "{lf:#?}");
    assert_eq!(acts(&lf).len(), 5, "{lf:#?}");
    assert_eq!(decisions(&r_fast[0]), decisions(&r_full[0]));
    assert!(r_fast[0].error.is_none(), "{:?}", r_fast[0].error);
}

#[test]
fn a_conflict_on_a_fast_listing_is_planned_again_from_the_full_listing() {
    let fast = busy_pool();
    let full = busy_pool();
    let hint = complete_hint(&["zpool1@a", "zpool1/bad@a", "zpool1/my data@a"]);
    let r_fast = run_hinted(&fast, &[job()], &hint);
    let r_full = run_hinted(&full, &[job()], &HoldHint::default());
    let lf = fast.log();
    let fast_at = lf
        .iter()
        .position(|c| c.contains(" -o name,guid,createtxg "))
        .unwrap();
    let full_at = lf
        .iter()
        .position(|c| c.contains(" -o name,type,"))
        .unwrap();
    assert!(fast_at < full_at, "{lf:#?}");
    assert_eq!(
        everything_listings(&lf),
        2,
        "both sides again, in full: {lf:#?}"
    );
    // The same decisions, and the conflict shows real creation times.
    assert_eq!(decisions(&r_fast[0]), decisions(&r_full[0]));
    let sends = |log: &[String]| log.iter().filter(|c| c.contains(" | ")).count();
    assert_eq!(sends(&lf), sends(&full.log()));
    let (s, d) = r_fast[0].listings.as_ref().unwrap();
    assert!(!s.partial && !d.partial);
    assert!(format!("{:?}", r_fast[0].datasets).contains("written-on-standby"));
}

#[test]
fn a_fast_listing_that_cannot_be_completed_falls_back_to_the_full_one() {
    let hint = complete_hint(&["zpool1@a", "zpool1/data@a", "zpool2@a", "zpool2/data@a"]);
    // A name that now belongs to another snapshot; a peer whose `serve`
    // predates the fast listing.
    for fake in [
        Fake {
            reused: Some("zpool2/data@a".into()),
            ..two_pools()
        },
        Fake {
            old_peer: true,
            ..two_pools()
        },
    ] {
        let reports = run_many(&fake, &hint);
        let log = fake.log();
        assert_eq!(everything_listings(&log), 2, "{log:#?}");
        for r in &reports {
            assert_eq!(r.outcome, Outcome::NothingToDo, "{:?}", r.error);
            let (s, d) = r.listings.as_ref().unwrap();
            assert!(!s.partial && !d.partial);
        }
    }
}

fn run_kept(
    fake: &Fake,
    jobs: &[PoolJob],
    hint: &HoldHint,
    dir: &std::path::Path,
) -> Vec<zfs_nfs_replica::report::PoolReport> {
    let s = Settings {
        kept: Some(zfs_nfs_replica::engine::KeptPlace {
            dir: dir.to_path_buf(),
            local: "pve1".into(),
            read_only: false,
        }),
        ..settings(false)
    };
    run_with(fake, jobs, hint, &s)
}

/// As if `secs` had passed since every kept value was first seen.
fn age_kept(dir: &std::path::Path, secs: u64) {
    for node in ["pve1", "pve2"] {
        let p = dir.join(format!("{node}.json"));
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for e in v["datasets"].as_object_mut().unwrap().values_mut() {
            let seen = e["seen"].as_u64().unwrap();
            e["seen"] = seen.saturating_sub(secs * 1_000_000_000).into();
        }
        std::fs::write(&p, v.to_string()).unwrap();
    }
}

/// The datasets whose snapshots a side listed, per command.
fn snapshot_listings(log: &[String], side: &str) -> Vec<String> {
    log.iter()
        .filter(|c| c.starts_with(side) && c.contains(" -t snapshot -d 1 "))
        .map(|c| {
            c.split(" -o name,guid,createtxg ")
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect()
}

fn every_snapshot_fast(log: &[String]) -> usize {
    tree_listings(log, "name,guid,createtxg ")
}

#[test]
fn kept_snapshot_lists_skip_unchanged_datasets_once_vouched_for_and_never_hide_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let hint = complete_hint(&["zpool1@a", "zpool1/data@a", "zpool2@a", "zpool2/data@a"]);
    // The first run lists every dataset's snapshots; so does the next one,
    // right after: the values were seen too recently.
    for _ in 0..2 {
        let fake = two_pools();
        let reports = run_kept(&fake, &jobs(), &hint, dir.path());
        let log = fake.log();
        assert_eq!(
            every_snapshot_fast(&log) + everything_listings(&log),
            0,
            "{log:#?}"
        );
        for side in ["local", "remote"] {
            assert_eq!(
                snapshot_listings(&log, side),
                ["zpool1 zpool1/data zpool2 zpool2/data"],
                "{log:#?}"
            );
        }
        assert!(reports.iter().all(|r| r.outcome == Outcome::NothingToDo));
    }
    // A minute later those lists are vouched for: the datasets alone, the
    // `zfs get`, the holds; the same result as the plain fast listing.
    age_kept(dir.path(), 120);
    let fake = two_pools();
    let reports = run_kept(&fake, &jobs(), &hint, dir.path());
    let log = fake.log();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert!(snapshot_listings(&log, "local").is_empty(), "{log:#?}");
    let plain = two_pools();
    let expected = run_many(&plain, &hint);
    for (r, e) in reports.iter().zip(&expected) {
        assert_eq!(r.outcome, Outcome::NothingToDo, "{:?}", r.error);
        assert_eq!(decisions(r), decisions(e));
        assert_eq!(r.listings, e.listings);
    }
    // A new snapshot on the source: that dataset alone is listed, and sent.
    let mut fake = two_pools();
    fake.local_list += &snap("zpool1/data", "b", 99, 0);
    let reports = run_kept(&fake, &jobs(), &hint, dir.path());
    let log = fake.log();
    assert_eq!(
        snapshot_listings(&log, "local"),
        ["zpool1/data"],
        "{log:#?}"
    );
    assert!(snapshot_listings(&log, "remote").is_empty(), "{log:#?}");
    assert!(
        log.iter()
            .any(|c| c.contains("-I zpool1/data@a zpool1/data@b") && c.contains(" | ")),
        "{log:#?}"
    );
    assert_eq!(
        reports[0].outcome,
        Outcome::Replicated,
        "{:?}",
        reports[0].error
    );
    // A snapshot made on the standby: listed there, seen, and refused as
    // the conflict it is (planned again from full listings).
    let mut fake = two_pools();
    fake.remote_list += &snap("zpool2", "standby", 77, 0);
    let reports = run_kept(&fake, &jobs(), &hint, dir.path());
    let log = fake.log();
    assert_eq!(snapshot_listings(&log, "remote"), ["zpool2"], "{log:#?}");
    assert_eq!(everything_listings(&log), 2, "{log:#?}");
    assert_eq!(reports[1].outcome, Outcome::Refused, "{:?}", reports[1]);
}

#[test]
fn a_side_without_snapshots_changed_gets_the_plain_fast_listing_and_is_not_asked_for_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let hint = complete_hint(&["zpool1@a", "zpool1/data@a", "zpool2@a", "zpool2/data@a"]);
    for run in 0..2 {
        let fake = Fake {
            no_snapshots_changed: Some("remote".into()),
            ..two_pools()
        };
        let reports = run_kept(&fake, &jobs(), &hint, dir.path());
        let log = fake.log();
        let asked = log
            .iter()
            .filter(|c| c.contains(",snapshots_changed "))
            .count();
        // Both sides ask at once the first time; then neither does.
        assert_eq!(asked, if run == 0 { 2 } else { 0 }, "{log:#?}");
        assert_eq!(every_snapshot_fast(&log), 2, "{log:#?}");
        assert_eq!(everything_listings(&log), 0, "{log:#?}");
        for r in &reports {
            assert_eq!(r.outcome, Outcome::NothingToDo, "{:?}", r.error);
        }
    }
}
