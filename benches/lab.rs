//! Benchmarks on real OpenZFS, in the lab (two qemu nodes, tests/lab/), all
//! measured side by side in one run:
//!
//! 1. idle cycle: 2 pools x 26 datasets x 50 snapshots already in sync:
//!    `zfs-nfs-replica run` against `syncoid --recursive --no-sync-snap`
//!    and the ideal (one `zfs list -o name,guid,createtxg` per node, both at once, over an open
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
//! tiny tree, each measurement once (and our incremental a second time,
//! after the resets), to keep the harness from rotting; the lab tests run
//! the same smoke on a lab they have booted anyway (tests/lab.rs). Prints
//! a Markdown report on stdout. The measurements live in
//! tests/common/bench.rs.
//!
//!   cargo bench --bench lab                  (bench/run.sh wraps it)
//!   cargo bench --bench lab -- --smoke

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::bench::{Opts, Tree};
use common::lab::Lab;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it: then it is the smoke run that keeps it from rotting.
    let smoke = args.iter().any(|a| a == "--smoke") || !args.iter().any(|a| a == "--bench");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 1 } else { 5 });
    let o = Opts { runs, smoke };
    let tree = Tree::new(smoke);
    if !smoke && std::env::var_os("LAB_MEM").is_none() {
        // The full tree's standby outgrows the default 1 GiB guest (the pools
        // are files on the guest's tmpfs); bench/run.sh sets the same.
        // SAFETY: single-threaded here, before the lab (and any thread) starts.
        unsafe { std::env::set_var("LAB_MEM", "3072") };
    }
    let started = Instant::now();
    let lab = Lab::get();
    eprintln!("[bench] lab up in {:.1}s", started.elapsed().as_secs_f64());
    let report = common::bench::bench(&lab, &o, &tree);
    println!("{report}");
    eprintln!("[bench] done in {:.1}s", started.elapsed().as_secs_f64());
}
