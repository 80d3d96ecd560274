//! The lab benchmark (benches/lab.rs) itself, shared with the lab test that
//! keeps it from rotting (tests/lab.rs runs its smoke version on a lab
//! already booted). Benchmarks on real OpenZFS, in the lab (two qemu nodes, tests/lab/), all
//! measured side by side in one run:
//!
//! 1. idle cycle: 2 pools x 26 datasets x 50 snapshots already in sync:
//!    `zfs-nfs-replica run` against `syncoid --recursive --no-sync-snap`
//!    and the minimal ideal (one `zfs list -o name,guid,createtxg` per node, both at once, over an open
//!    ssh connection); wall time, and remote commands counted by the
//!    standby's sshd (`LogLevel DEBUG1`: one `Starting session: command`
//!    line per command, multiplexed ones included);
//! 2. incremental transfer: 64 MiB of new data in 5 datasets, one snapshot
//!    each: our run against the raw `zfs send -I | ssh | zfs receive` over an
//!    open connection, and syncoid;
//! 3. footprint: peak RSS of an idle run, binary size.
//!
//! Every measurement is repeated (`--runs`, default 5; tools interleaved so
//! drift hits all alike) and reported as median and spread, with ratios.
//! `--smoke` (and any run without `--bench`, i.e. under `cargo test`): a
//! tiny tree and two runs (the second after the resets), to keep the harness
//! from rotting. Prints a
//! Markdown report on stdout.
//!
//!   cargo bench --bench lab                  (bench/run.sh wraps it)
//!   cargo bench --bench lab -- --smoke

use std::time::Instant;

use super::lab::{Lab, NODES};

const A: &str = "pve1";
const B: &str = "pve2";
/// The same config with the replication key, which the peer's
/// `authorized_keys` restricts to `serve` (the forced command, as the README
/// installs it); `config.toml` uses the harness's key, a full root shell
/// (which runs the same `zfs-nfs-replica serve` request line).
const RESTRICTED: &str = "/etc/zfs-nfs-replica/restricted.toml";
/// The standby's sshd logs every command run over ssh from A like this
/// (`command` through a shell, `forced-command (key-option) '…'` through
/// the restricted key).
const SESSION: &str = "Starting session: (command|forced-command .*) for root from 192.168.100.10";

pub struct Opts {
    /// Repetitions of each measurement.
    pub runs: usize,
    /// The tiny tree, one pool: the harness runs, the numbers mean nothing.
    pub smoke: bool,
}

pub struct Tree {
    /// Datasets directly below each pool, each with `children` children.
    pub top: usize,
    pub children: usize,
    pub snapshots: usize,
    /// Incremental: datasets written to, MiB each.
    pub inc_datasets: usize,
    pub inc_mib_each: f64,
}

impl Tree {
    /// The smoke's tiny tree, or the measured one (2 pools x 26 datasets x
    /// 50 snapshots; 64 MiB in 5 datasets for the incremental).
    pub fn new(smoke: bool) -> Tree {
        if smoke {
            Tree {
                top: 1,
                children: 1,
                snapshots: 2,
                inc_datasets: 1,
                inc_mib_each: 1.0,
            }
        } else {
            Tree {
                top: 5,
                children: 4,
                snapshots: 50,
                inc_datasets: 5,
                inc_mib_each: 12.8,
            }
        }
    }
}

#[derive(Default, Clone)]
struct Stat {
    v: Vec<f64>,
}

impl Stat {
    fn push(&mut self, x: f64) {
        self.v.push(x);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut s = self.v.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s
    }
    fn median(&self) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        s[s.len() / 2]
    }
    fn spread(&self) -> String {
        let s = self.sorted();
        match (s.first(), s.last()) {
            (Some(a), Some(b)) => format!("{a:.2}-{b:.2}"),
            _ => "-".into(),
        }
    }
}

/// Wall time of `cmd` run by bash on `node`, measured inside the node (no
/// host-side ssh in it). Fails the bench when `cmd` exits outside `ok`.
fn timed(lab: &Lab, node: &str, cmd: &str, ok: &[i32]) -> f64 {
    let script = format!(
        "s=$(date +%s%N); ( {cmd} ) >/tmp/bench.out 2>&1; rc=$?; e=$(date +%s%N); echo \"$rc $(( (e - s) / 1000000 ))\""
    );
    let out = lab.ok(node, &script);
    let mut f = out.split_whitespace();
    let rc: i32 = f.next().unwrap().parse().unwrap();
    let ms: f64 = f.next().unwrap().parse().unwrap();
    if !ok.contains(&rc) {
        let log = lab.ok(node, "tail -n 40 /tmp/bench.out");
        panic!("`{cmd}` on {node} exited {rc}:\n{log}");
    }
    ms / 1000.0
}

fn sessions(lab: &Lab) -> usize {
    lab.ok(
        B,
        &format!("grep -cE '{SESSION}' /var/log/sshd.log || true"),
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

/// `f`'s wall time (from `timed`) and the remote commands it ran on B.
fn measure(lab: &Lab, f: impl Fn() -> f64) -> (f64, usize) {
    let before = sessions(lab);
    let t = f();
    // sshd writes its log asynchronously to our reading: settle.
    std::thread::sleep(std::time::Duration::from_millis(300));
    (t, sessions(lab) - before)
}

fn pools(smoke: bool) -> &'static [&'static str] {
    if smoke {
        &["zpool1"]
    } else {
        &["zpool1", "zpool2"]
    }
}

fn setup(lab: &Lab, o: &Opts, t: &Tree) {
    lab.fresh_pools();
    lab.place_guest(A);
    // Checks spaced by 0: sleeps would not say anything about the tool.
    let cfg = |node: &str| {
        let pools: String = pools(o.smoke)
            .iter()
            .map(|p| format!("[[pool]]\nname = \"{p}\"\n"))
            .collect();
        format!(
            "[cluster]\nguest = 103\nnode = \"{node}\"\nnodes = {{ pve1 = \"192.168.100.10\", pve2 = \"192.168.100.20\" }}\n\
             [ssh]\nidentity = \"/root/.ssh/id_ed25519\"\nstrict_host_key_checking = \"accept-new\"\n\
             [proxmox]\nurl = \"https://10.0.2.100:8006\"\n[checks]\ninterval = \"0\"\n{pools}"
        )
    };
    lab.on_each(|n| {
        lab.ok(
            n,
            &format!(
                "cat > /etc/zfs-nfs-replica/config.toml <<'EOF'\n{}EOF\nsed 's|/root/.ssh/id_ed25519|/root/.ssh/replica_ed25519|' /etc/zfs-nfs-replica/config.toml > {RESTRICTED}\n\
                 mkdir -p /etc/sanoid && printf '[zpool1]\\n\\tautosnap = no\\n[zpool2]\\n\\tautosnap = no\\n' > /etc/sanoid/sanoid.conf",
                cfg(n)
            ),
        );
    });
    // The standby's sshd logs every session's command (SIGHUP: sshd
    // re-executes itself with the new config; open sessions stay).
    lab.ok(
        B,
        "grep -q '^LogLevel DEBUG1' /etc/ssh/sshd_config || echo 'LogLevel DEBUG1' >> /etc/ssh/sshd_config; \
         kill -HUP $(pgrep -P 1 -x sshd); sleep 1; : > /var/log/sshd.log",
    );
    let mut script = String::from("set -e\n");
    for p in pools(o.smoke) {
        for d in 1..=t.top {
            script += &format!("zfs create {p}/d{d}\n");
            for c in 1..=t.children {
                script += &format!("zfs create {p}/d{d}/c{c}\n");
            }
        }
        script += &format!(
            "for i in $(seq 1 {}); do zfs snapshot -r {p}@b$i; done\n",
            t.snapshots
        );
    }
    let t0 = Instant::now();
    lab.ok(A, &script);
    eprintln!(
        "[bench] tree: {} pool(s) x {} datasets x {} snapshots in {:.0}s",
        pools(o.smoke).len(),
        1 + t.top * (1 + t.children),
        t.snapshots,
        t0.elapsed().as_secs_f64()
    );
    // The standby, made with one replication stream per pool (a full sync
    // dataset by dataset takes minutes under TCG and is not measured here),
    // then one run of ours to place the holds: from then on, idle.
    let t0 = Instant::now();
    for p in pools(o.smoke) {
        // Every snapshot received is a transaction group of its own: about
        // ten minutes per pool of 1300 snapshots under TCG.
        let out = lab.sh_timeout(
            A,
            &format!(
                "zfs send -R {p}@b{} | ssh pve2 zfs receive -u -F -o readonly=on {p}",
                t.snapshots
            ),
            std::time::Duration::from_secs(3600),
        );
        assert_eq!(out.code, Some(0), "the standby of {p}: {}", out.all());
    }
    let out = lab.replica(A, "run");
    assert_eq!(
        out.code,
        Some(1),
        "holds placed, nothing to send: {}",
        out.all()
    );
    eprintln!("[bench] standby made in {:.0}s", t0.elapsed().as_secs_f64());
    // An open connection for the ideal and the raw pipe.
    lab.ok(
        A,
        "ssh -o ControlMaster=yes -o ControlPath=/tmp/bench-cm -o ControlPersist=600 -f -N pve2",
    );
}

pub fn bench(lab: &Lab, o: &Opts, t: &Tree) -> String {
    setup(lab, o, t);
    let p = pools(o.smoke).join(" ");
    let syncoid = |pool: &str| {
        format!(
            "syncoid --recursive --no-sync-snap --no-privilege-elevation {pool} root@pve2:{pool}"
        )
    };
    let syncoid_all: String = pools(o.smoke)
        .iter()
        .map(|x| syncoid(x))
        .collect::<Vec<_>>()
        .join(" && ");
    // The minimal ideal: the three columns a plan cannot do without, which
    // OpenZFS 2.2+ lists on its fast path (2.1 only for names alone).
    let minimal = "zfs list -H -p -t filesystem,volume,snapshot -r -o name,guid,createtxg";
    let ideal = format!(
        "{minimal} {p} > /dev/null & ssh -o ControlPath=/tmp/bench-cm pve2 '{minimal} {p}' > /dev/null; rc=$?; wait $! && exit $rc"
    );
    // 1. idle cycle. The standby's copies as a receive leaves them
    // (`receive -u`: unmounted), then as the standby's own timer run leaves
    // them (mounted read-only); every other contender lists them mounted.
    let unmount_standby = format!(
        "zfs list -H -o name,mounted -t filesystem -r {p} | awk '$2 == \"yes\" {{ print $1 }}' | tac | while read -r d; do zfs unmount \"$d\"; done"
    );
    let (mut ours, mut sync, mut best) = (Stat::default(), Stat::default(), Stat::default());
    let (mut forced, mut unmounted) = (Stat::default(), Stat::default());
    let (mut ours_cmds, mut sync_cmds, mut best_cmds, mut forced_cmds) = (0, 0, 0, 0);
    for _ in 0..o.runs {
        lab.ok(B, &unmount_standby);
        unmounted.push(timed(lab, A, "zfs-nfs-replica run", &[1]));
        let standby = lab.replica(B, "run");
        assert_eq!(standby.code, Some(1), "{}", standby.all());
        let (x, c) = measure(lab, || timed(lab, A, "zfs-nfs-replica run", &[1]));
        ours.push(x);
        ours_cmds = c;
        let (x, c) = measure(lab, || {
            timed(
                lab,
                A,
                &format!("zfs-nfs-replica -c {RESTRICTED} run"),
                &[1],
            )
        });
        forced.push(x);
        forced_cmds = c;
        let (x, c) = measure(lab, || timed(lab, A, &syncoid_all, &[0]));
        sync.push(x);
        sync_cmds = c;
        let (x, c) = measure(lab, || timed(lab, A, &ideal, &[0]));
        best.push(x);
        best_cmds = c;
    }
    if std::env::var_os("BENCH_PROFILE").is_some() {
        // Where an idle run's time goes: every step, timestamped.
        eprintln!(
            "{}",
            lab.sh(A, "RUST_LOG=zfs_nfs_replica=trace zfs-nfs-replica run 2>&1")
                .stdout
        );
    }
    // 3. footprint of an idle run (the tool's own process; `zfs` and ssh
    // children are not in it).
    let rss = lab.ok(
        A,
        "zfs-nfs-replica -v run 2>&1 | grep -o 'peak RSS [0-9]* KiB' | tail -n 1",
    );
    // 2. incremental transfer
    let datasets: Vec<String> = (1..=t.inc_datasets)
        .map(|d| format!("zpool1/d{d}"))
        .collect();
    let base = format!("b{}", t.snapshots);
    let kib = (t.inc_mib_each * 1024.0) as u64;
    let total_mib = t.inc_mib_each * t.inc_datasets as f64;
    let prepare = |k: usize| {
        let mut s = String::from("set -e\n");
        for d in &datasets {
            s += &format!(
                "rm -f /{d}/blob; dd if=/dev/urandom of=/{d}/blob bs=1K count={kib} status=none; zfs snapshot {d}@inc{k}\n"
            );
        }
        lab.ok(A, &s);
    };
    // Back to the base (our holds on the new snapshot released first): the
    // standby rolls back to it, the master drops the new snapshot; every
    // measurement then sends the same amount.
    let reset = |k: usize| {
        for n in NODES {
            let mut s = String::new();
            for d in &datasets {
                let undo = if n == A {
                    format!("zfs destroy {d}@inc{k}")
                } else {
                    format!("zfs rollback -r {d}@{base}")
                };
                s += &format!(
                    "zfs release zfs-nfs-replica:{other} {d}@inc{k} 2>/dev/null; {undo} 2>/dev/null; ",
                    other = if n == A { B } else { A }
                );
            }
            s += "true";
            lab.ok(n, &s);
        }
    };
    let raw: String = datasets
        .iter()
        .map(|d| {
            format!(
                "zfs send -I {d}@{base} {d}@inc$K | ssh -o ControlPath=/tmp/bench-cm pve2 zfs receive -u {d}"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let (mut i_ours, mut i_xfer, mut i_raw, mut i_sync, mut i_forced) = (
        Stat::default(),
        Stat::default(),
        Stat::default(),
        Stat::default(),
        Stat::default(),
    );
    let mut k = 0;
    for _ in 0..o.runs {
        k += 1;
        prepare(k);
        // The resets roll the standby back behind the tool's back, which its
        // size guard rightly reports; accepting the change is the operator's
        // answer to that and costs nothing (the guards are still evaluated).
        i_ours.push(timed(
            lab,
            A,
            "JOURNAL_STREAM=8:1 zfs-nfs-replica run --pool zpool1 --accept-size-change zpool1",
            &[0],
        ));
        // The transfer phase of that run, as the tool logged it per dataset.
        let secs: f64 = lab
            .ok(
                A,
                "grep -o 'seconds=\"[0-9.]*\"' /tmp/bench.out | tr -dc '0-9.\\n' ",
            )
            .lines()
            .filter_map(|l| l.parse::<f64>().ok())
            .sum();
        i_xfer.push(secs);
        reset(k);
        k += 1;
        prepare(k);
        i_forced.push(timed(
            lab,
            A,
            &format!(
                "zfs-nfs-replica -c {RESTRICTED} run --pool zpool1 --accept-size-change zpool1"
            ),
            &[0],
        ));
        reset(k);
        k += 1;
        prepare(k);
        i_raw.push(timed(lab, A, &format!("K={k}; {raw}"), &[0]));
        reset(k);
        k += 1;
        prepare(k);
        i_sync.push(timed(lab, A, &syncoid("zpool1"), &[0]));
        reset(k);
    }
    if std::env::var_os("BENCH_PROFILE").is_some() {
        // Where an incremental run's time goes: every step, timestamped.
        k += 1;
        prepare(k);
        eprintln!(
            "{}",
            lab.sh(
                A,
                "RUST_LOG=zfs_nfs_replica=trace zfs-nfs-replica run --pool zpool1 --accept-size-change zpool1 2>&1"
            )
            .stdout
        );
        reset(k);
    }
    if o.smoke {
        // Our run once more, after the resets: the bench's own loop must not
        // trip the tool's guards (it once did: a reset rolls the standby back
        // behind the tool's back), which only a second iteration shows.
        k += 1;
        prepare(k);
        i_ours.push(timed(
            lab,
            A,
            "JOURNAL_STREAM=8:1 zfs-nfs-replica run --pool zpool1 --accept-size-change zpool1",
            &[0],
        ));
        reset(k);
    }
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_zfs-nfs-replica"))
        .map(|m| m.len())
        .unwrap_or(0);
    let stripped = lab
        .ok(A, "stat -c %s /usr/bin/zfs-nfs-replica")
        .trim()
        .parse::<u64>()
        .unwrap_or(0);

    let snaps = pools(o.smoke).len() * (1 + t.top * (1 + t.children)) * t.snapshots;
    let mut r = String::new();
    r += &format!(
        "### Idle cycle: {} pool(s), {} datasets each, {} snapshots per node, in sync ({} run(s) each, seconds)\n\n",
        pools(o.smoke).len(),
        1 + t.top * (1 + t.children),
        snaps,
        o.runs
    );
    r += "The standby's received filesystems are mounted read-only, as its own timer runs leave them, except in the first row.\n\n";
    r += "| tool | median s | min-max s | remote commands | vs ideal | speed-up vs syncoid |\n|---|---:|---:|---:|---:|---:|\n";
    for (name, s, c) in [
        (
            "zfs-nfs-replica run, the standby's copies unmounted (as received)",
            &unmounted,
            ours_cmds,
        ),
        ("zfs-nfs-replica run (full-shell key)", &ours, ours_cmds),
        (
            "zfs-nfs-replica run (key restricted to serve)",
            &forced,
            forced_cmds,
        ),
        ("syncoid --recursive --no-sync-snap", &sync, sync_cmds),
        (
            "ideal: one `zfs list -o name,guid,createtxg` per node, both at once",
            &best,
            best_cmds,
        ),
    ] {
        r += &format!(
            "| {name} | {:.2} | {} | {c} | {:.2}x | {:.2}x |\n",
            s.median(),
            s.spread(),
            s.median() / best.median(),
            sync.median() / s.median()
        );
    }
    r += &format!(
        "\n### Incremental: {total_mib:.0} MiB of new data in {} dataset(s), one snapshot each ({} run(s) each)\n\n",
        t.inc_datasets, o.runs
    );
    r += "| what | median s | min-max s | MiB/s | throughput vs raw pipe |\n|---|---:|---:|---:|---:|\n";
    for (name, s) in [
        ("zfs-nfs-replica run (whole run, full-shell key)", &i_ours),
        (
            "zfs-nfs-replica run (whole run, key restricted to serve)",
            &i_forced,
        ),
        ("zfs-nfs-replica: its transfers alone", &i_xfer),
        (
            "raw `zfs send -I \\| ssh \\| zfs receive` (open connection)",
            &i_raw,
        ),
        ("syncoid --recursive --no-sync-snap", &i_sync),
    ] {
        r += &format!(
            "| {name} | {:.2} | {} | {:.1} | {:.2} |\n",
            s.median(),
            s.spread(),
            total_mib / s.median(),
            i_raw.median() / s.median()
        );
    }
    r += &format!(
        "\n### Footprint\n\n- idle run, the tool's own process: {}\n- binary: {:.1} MiB as built, {:.1} MiB without debug info (as the lab runs it)\n",
        if rss.trim().is_empty() {
            "not reported".to_string()
        } else {
            rss.trim().to_string()
        },
        size as f64 / 1048576.0,
        stripped as f64 / 1048576.0
    );
    r
}
