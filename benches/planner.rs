//! Planner scale: pure `zfs list -H -p` parsing of both sides (line by
//! line, as the tool reads them from the pipe) plus the plan,
//! on synthetic listings of 1k, 10k, 100k and 1M snapshots (100 snapshots
//! per dataset, a standby that is one snapshot behind everywhere, so every
//! dataset is an incremental). No ZFS, no I/O in the measured part.
//!
//!   cargo bench --bench planner                  # every size, 5 runs each
//!   cargo bench --bench planner -- --runs 1 --max 10000   # smoke
//!   (`cargo test` runs it without --bench: the same smoke)
//!
//! Each size runs in a child process of its own, so its peak RSS
//! (getrusage maxrss) is that size's alone. Prints one line per size and a
//! Markdown table row per size on stdout (bench/run.sh collects them).

use std::process::Command;
use std::time::{Duration, Instant};

use zfs_nfs_replica::plan::{self, Options};
use zfs_nfs_replica::zfs::ListParser;

const PER_DATASET: usize = 100;

/// A `zfs list -H -p -o <LIST_PROPS>` text, one dataset's lines at a time
/// to `each` (as they come from the pipe: the tool never holds a listing
/// whole): `snapshots` snapshots over `snapshots / 100` datasets below
/// `pool`; the receiver lacks the newest snapshot of every dataset and has
/// its own createtxgs. Returns the text's whole length.
fn listing(pool: &str, snapshots: usize, receiver: bool, each: &mut dyn FnMut(&str)) -> usize {
    let datasets = snapshots.div_ceil(PER_DATASET);
    let mut s = String::with_capacity(PER_DATASET * 160);
    let mut total = 0;
    let txg0 = if receiver { 5_000_000 } else { 100 };
    for d in 0..datasets {
        s.clear();
        let name = if d == 0 {
            pool.to_string()
        } else {
            format!("{pool}/group{:03}/data set {d}", d / 50)
        };
        // Parents of the nested names.
        if d > 0 && d % 50 == 0 || d == 1 {
            let parent = format!("{pool}/group{:03}", d / 50);
            s.push_str(&format!(
                "{parent}\tfilesystem\t{}\t{txg0}\t1700000000\t1048576\t98304\t0\t-\t-\toff\n",
                9_000_000 + d
            ));
        }
        s.push_str(&format!(
            "{name}\tfilesystem\t{}\t{}\t1700000000\t104857600\t52428800\t0\t-\t-\toff\n",
            1_000_000 + d,
            txg0 + d as u64
        ));
        let n = if receiver {
            PER_DATASET - 1
        } else {
            PER_DATASET
        };
        for i in 0..n {
            let guid = (d as u64) << 20 | i as u64 | 1 << 40;
            s.push_str(&format!(
                "{name}@autosnap_2026-11-{:02}_{:02}:00:00_hourly\tsnapshot\t{guid}\t{}\t{}\t{}\t52428800\t{}\t{}\t-\toff\n",
                1 + i / 24,
                i % 24,
                txg0 + 1000 + (d * PER_DATASET + i) as u64,
                1_700_000_000 + i as i64 * 3600,
                4096 * i,
                65536,
                u8::from(i + 1 == n)
            ));
        }
        total += s.len();
        each(&s);
    }
    total
}

fn peak_rss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

/// One size in this process: time parse + plan `runs` times, the listings
/// generated a dataset at a time and parsed line by line as the tool does
/// (only the parse and the plan are timed).
fn child(snapshots: usize, runs: usize) {
    let opts = Options {
        empty_max_referenced: plan::DEFAULT_EMPTY_MAX_REFERENCED,
        ..Options::default()
    };
    let parse = |receiver: bool, spent: &mut Duration| {
        let mut p = ListParser::default();
        let text = listing("zpool1", snapshots, receiver, &mut |chunk| {
            let t = Instant::now();
            chunk.lines().for_each(|l| p.line(l));
            *spent += t.elapsed();
        });
        let t = Instant::now();
        let l = p.finish().expect("the listing parses");
        *spent += t.elapsed();
        (l, text)
    };
    let mut times = Vec::new();
    let mut items = 0;
    let mut text = 0;
    for _ in 0..runs {
        let mut spent = Duration::ZERO;
        let (s, slen) = parse(false, &mut spent);
        let (d, dlen) = parse(true, &mut spent);
        let t = Instant::now();
        let p = plan::plan(&s, "zpool1", &d, "zpool1", &opts);
        spent += t.elapsed();
        times.push(spent.as_secs_f64() * 1000.0);
        text = slen + dlen;
        items = p.items.len();
        let incremental = p
            .items
            .iter()
            .filter(|i| matches!(i.action, plan::Action::Incremental { .. }))
            .count();
        assert_eq!(
            incremental,
            snapshots.div_ceil(PER_DATASET),
            "every dataset with snapshots is one snapshot behind"
        );
        drop((p, s, d));
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    println!(
        "RESULT {snapshots} {items} {median:.2} {:.2} {:.2} {} {text}",
        times[0],
        times[times.len() - 1],
        peak_rss_kib(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a number"))
    };
    if let Some(n) = get("--child") {
        child(n, get("--runs").unwrap_or(5));
        return;
    }
    // `cargo bench` passes --bench; under `cargo test --all-targets` (no
    // --bench) this is a smoke run: one small size, once.
    let bench = args.iter().any(|a| a == "--bench");
    let runs = get("--runs").unwrap_or(if bench { 5 } else { 1 });
    let max = get("--max").unwrap_or(if bench { 1_000_000 } else { 10_000 });
    println!("planner: parse both listings + plan, median of {runs} run(s)");
    println!(
        "| snapshots (per side) | datasets | median ms | min-max ms | ns per snapshot | peak RSS MiB | listing text MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|n| *n <= max)
    {
        let out = Command::new(&args[0])
            .args(["--child", &n.to_string(), "--runs", &runs.to_string()])
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT "))
            .expect("a result");
        let f: Vec<f64> = line[7..].split(' ').map(|x| x.parse().unwrap()).collect();
        println!(
            "| {} | {} | {:.1} | {:.1}-{:.1} | {:.0} | {:.1} | {:.1} |",
            n,
            f[1],
            f[2],
            f[3],
            f[4],
            f[2] * 1e6 / n as f64,
            f[5] / 1024.0,
            f[6] / 1048576.0
        );
    }
}
