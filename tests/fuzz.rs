//! Fuzzing every parser of what a node hands the tool: `zfs list -Hp`,
//! `zfs holds`, `zpool list`, `zpool status -p`, `zfs get` of the role
//! properties, `zfs send -P -v` progress, the Proxmox API's answers and
//! `.vmlist`, sanoid.conf, the TOML config, and the tool's own state files.
//!
//! Each target starts from its corpus (`tests/fuzz/corpus/<target>/`, real
//! captured output and hand-written shapes) and feeds mutated copies of it
//! (byte flips, insertions and deletions, chunks repeated or spliced in from
//! other seeds, interesting tokens, line shuffles) for a time budget. No
//! input may panic; sanoid.conf has properties on top (a rewrite is
//! idempotent, flips back byte for byte, and reads back). A panic fails the
//! test and the input is written to `target/fuzz-crashes/` to replay.
//!
//! This is mutation fuzzing without coverage feedback (stable Rust has no
//! coverage-guided engine): the budget buys breadth, the corpora carry the
//! structure. Budget per target: `FUZZ_SECONDS` (default 2; the test
//! command's pass), e.g. `FUZZ_SECONDS=300 cargo test --release --test
//! fuzz -- --nocapture` for a long run. `FUZZ_SEED` picks the generator's
//! seed (default: fixed, so a run replays).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zfs_nfs_replica::{config, history, notify, sanoid, state, status, zfs};

use common::Rng;

/// Tokens that parsers care about.
const TOKENS: &[&[u8]] = &[
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"=",
    b"[",
    b"]",
    b"#",
    b";",
    b"@",
    b"/",
    b"-",
    b"0",
    b"-1",
    b"18446744073709551615",
    b"99999999999999999999",
    b"4294967296",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\x00",
    b"<<EOT",
    b"EOT",
    b"autosnap",
    b"recursive = yes",
    b"zfs",
    b"yes",
    b"no ",
    b"{",
    b"}",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"1e999",
    b"NaN",
    b"\"data\"",
    b"state:",
    b"errors:",
    b"scan:",
    b"config:",
    b"ONLINE",
    b"DEGRADED",
    b"-",
    b"filesystem",
    b"volume",
    b"snapshot",
    b"full",
    b"incremental",
    b"size",
    b"[[pool]]",
    b"9999999999999999999s",
    b"\xc3\xaf\xc2\xbb\xc2\xbf",
];

fn mutate(r: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + r.below(8) {
        let at = r.below(v.len() + 1);
        match r.below(9) {
            0 if !v.is_empty() => {
                let i = r.below(v.len());
                v[i] ^= 1 << r.below(8);
            }
            1 if !v.is_empty() => {
                let n = 1 + r.below(16.min(v.len()));
                let i = r.below(v.len() - n + 1);
                v.drain(i..i + n);
            }
            2 => {
                let t = TOKENS[r.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                // Repeat a chunk.
                let n = 1 + r.below(64.min(v.len()));
                let i = r.below(v.len() - n + 1);
                let chunk: Vec<u8> = v[i..i + n].to_vec();
                v.splice(at..at, chunk);
            }
            4 if !others.is_empty() => {
                // Splice in a piece of another seed.
                let o = &others[r.below(others.len())];
                if !o.is_empty() {
                    let n = 1 + r.below(128.min(o.len()));
                    let i = r.below(o.len() - n + 1);
                    v.splice(at..at, o[i..i + n].iter().copied());
                }
            }
            5 => {
                // Swap two lines.
                let mut lines: Vec<Vec<u8>> =
                    v.split(|b| *b == b'\n').map(|l| l.to_vec()).collect();
                if lines.len() > 1 {
                    let (a, b) = (r.below(lines.len()), r.below(lines.len()));
                    lines.swap(a, b);
                    v = lines.join(&b'\n');
                }
            }
            6 if !v.is_empty() => {
                // Truncate.
                v.truncate(r.below(v.len()));
            }
            7 if !v.is_empty() => {
                // A digit run made huge or negative.
                if let Some(i) = v.iter().position(|b| b.is_ascii_digit()) {
                    let t: &[u8] = if r.below(2) == 0 {
                        b"99999999999999999999"
                    } else {
                        b"-7"
                    };
                    v.splice(i..i + 1, t.iter().copied());
                }
            }
            _ => {
                let i = r.below(v.len() + 1);
                v.insert(i, r.next() as u8);
            }
        }
    }
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v.into_iter().map(|(_, b)| b).collect()
}

fn budget() -> Duration {
    let s: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

/// Feed `check` every seed, then mutated inputs for the budget. Returns the
/// number of inputs.
fn fuzz(target: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) -> usize {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0000_0000_0001)
        ^ target
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut r = Rng(seed | 1);
    let started = Instant::now();
    let mut n = 0;
    let try_one = |input: &[u8]| {
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| check(input)));
        if res.is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            std::fs::create_dir_all(&dir).unwrap();
            let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let p = dir.join(format!("{target}-{h:016x}"));
            std::fs::write(&p, input).unwrap();
            panic!(
                "fuzz target {target} failed on the input saved as {}",
                p.display()
            );
        }
    };
    for s in &seeds {
        try_one(s);
        n += 1;
    }
    while started.elapsed() < budget() {
        for _ in 0..64 {
            let s = &seeds[r.below(seeds.len())];
            let input = mutate(&mut r, s, &seeds);
            try_one(&input);
            n += 1;
        }
    }
    eprintln!(
        "fuzz {target}: {n} inputs in {:.1}s, no failure",
        started.elapsed().as_secs_f64()
    );
    n
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn fuzz_zfs_list() {
    fuzz("zfs-list", corpus("zfs-list"), |b| {
        let _ = zfs::parse_list(&text(b));
    });
}

#[test]
fn fuzz_zfs_holds() {
    fuzz("holds", corpus("holds"), |b| {
        let _ = zfs::parse_holds(&text(b));
    });
}

#[test]
fn fuzz_zpool_list() {
    fuzz("zpool-list", corpus("zpool-list"), |b| {
        let _ = zfs::parse_pool_list(&text(b));
    });
}

#[test]
fn fuzz_zpool_status() {
    fuzz("zpool-status", corpus("zpool-status"), |b| {
        if let Ok(pools) = zfs::pool::parse_zpool_status(&text(b)) {
            // Whatever parsed can be judged.
            for p in &pools {
                let _ = zfs_nfs_replica::health::assess(&p.name, Some(p), None, &[], 0.05);
            }
        }
    });
}

#[test]
fn fuzz_role_props() {
    fuzz("role-props", corpus("role-props"), |b| {
        let _ = zfs::parse_role_props(&text(b));
    });
}

#[test]
fn fuzz_send_progress() {
    fuzz("send-progress", corpus("send-progress"), |b| {
        let mut p = zfs::send_progress::SendProgress::default();
        for l in text(b).lines() {
            p.feed(l);
        }
        let _ = p.bytes();
    });
}

#[test]
fn fuzz_api_answers_and_vmlist() {
    use zfs_nfs_replica::pve::answers::*;
    fuzz("api", corpus("api"), |b| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) else {
            return;
        };
        let data = v.get("data").cloned().unwrap_or(v);
        let _ = parse_cluster_status(&data);
        let _ = parse_resources(&data, 103);
        let _ = parse_ha_status(&data, "ct:103");
        let _ = parse_guest_status(&data, "/nodes/pve1/lxc/103/status/current");
    });
    fuzz("vmlist", corpus("vmlist"), |b| {
        let _ = parse_vmlist(&text(b), 103);
    });
}

#[test]
fn fuzz_sanoid_conf() {
    let mut seeds = corpus("sanoid");
    seeds.extend(
        common::sanoid_shapes::all()
            .into_iter()
            .map(|s| s.conf.into_bytes()),
    );
    let managed = vec!["zpool1".to_string(), "zpool2".to_string()];
    fuzz("sanoid", seeds, |b| {
        for on in [true, false] {
            let Ok(first) = sanoid::rewrite::rewrite(b, &managed, on) else {
                continue;
            };
            let again = sanoid::rewrite::rewrite(&first.text, &managed, on)
                .expect("a rewritten file reads back");
            assert_eq!(again.text, first.text, "a rewrite is idempotent");
            let flipped = sanoid::rewrite::rewrite(&first.text, &managed, !on).expect("flips");
            let back = sanoid::rewrite::rewrite(&flipped.text, &managed, on).expect("flips back");
            assert_eq!(
                back.text, first.text,
                "a flip and a flip back give the file back"
            );
        }
    });
}

#[test]
fn fuzz_config() {
    fuzz("config", corpus("config"), |b| {
        let _ = config::parse_str(&text(b), "fuzz.toml");
    });
}

#[test]
fn fuzz_state_files() {
    fuzz("state", corpus("state"), |b| {
        let t = text(b);
        if let Ok(mut s) = serde_json::from_str::<status::Status>(&t) {
            // A status that parses can be judged and shown.
            status::evaluate(
                &mut s,
                chrono::Utc::now(),
                &status::Thresholds::from_config(&Default::default()),
            );
            let _ = status::render::table(&s, chrono::Utc::now(), false);
            let _ = status::render::check_line(
                &s,
                &status::Thresholds::from_config(&Default::default()),
            );
            let _ = status::prometheus::render(&s);
        }
        let _ = serde_json::from_str::<history::History>(&t);
        let _ = serde_json::from_str::<state::RoleRecord>(&t);
        let _ = serde_json::from_str::<notify::Notified>(&t);
    });
}

mod common;
