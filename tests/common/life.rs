//! The life test: a seeded random sequence of what happens to a real
//! two-node cluster over months (writes, deletes, renames, sanoid's cron jobs, the
//! timer, planned migrations, crashes of either node, a crash in the middle
//! of a transfer, a cut replication link, a node booted again), run on the
//! lab's real OpenZFS, with the invariants that must hold after every event
//! checked on both nodes:
//!
//! - never two writers: at most one up node has a writable replicated
//!   dataset, and it is the node the guest runs on;
//! - a standby never makes a snapshot of its own, whoever runs there (real
//!   sanoid's cron jobs run on both nodes): only the master, and `resolve`'s
//!   quarantine capture, create new snapshot guids;
//! - nothing is lost: every snapshot ever seen still exists on some node,
//!   unless sanoid pruned it (an `autosnap_` name, in a prune event); what a
//!   quarantine holds is never pruned;
//! - a promoted standby serves exactly its newest snapshot's data, and a
//!   planned migration carries every last write over;
//! - every run ends within its limits and leaves no process behind; exit
//!   codes are the ones the situation allows; a divergence (exit 4 after a
//!   crash) is resolved the way the tool itself suggests;
//! - after a quiet period (both nodes up, link up, a few timer runs) both
//!   nodes hold the same newest snapshot of every dataset.
//!
//! The first broken invariant panics with the seed, the step and the tail of
//! the event log: `LIFE_SEED=<seed> LIFE_EVENTS=<n>` replays it.

// Nodes are indices 0 and 1 throughout (into NODES, `up`, `last`, ...):
// loops over them read better as indices.
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::Rng;
use super::lab::{Lab, NODES, Out};

/// Datasets whose files the test writes and follows.
pub const TRACKED: [&str; 3] = ["zpool1/a", "zpool1/a/b", "zpool2/c"];
const FILES: usize = 6;
const QUARANTINE: &str = "zfs-nfs-replica-quarantine";

pub const SANOID_CONF: &str = "[zpool1]\n\tuse_template = life\n\trecursive = yes\n\n[zpool2/c]\n\tuse_template = life\n\n[template_life]\n\tfrequent_period = 1\n\tfrequently = 3\n\thourly = 2\n\tdaily = 1\n\tmonthly = 0\n\tyearly = 0\n\tautosnap = yes\n\tautoprune = yes\n";

/// `file -> "size first-line"` of one dataset.
type Files = BTreeMap<String, String>;

/// One node as seen in one ssh round trip.
#[derive(Clone, Debug, Default)]
struct Obs {
    /// (snapshot name, guid), oldest first per dataset.
    snaps: Vec<(String, String)>,
    /// Replicated filesystems (not a quarantine) that are writable.
    writable: Vec<String>,
    /// Files of the tracked datasets that are mounted, per dataset.
    files: BTreeMap<String, Files>,
    /// Processes of ours or of a transfer still running.
    procs: Vec<String>,
}

impl Obs {
    /// The newest snapshot guid of `ds` among `known`.
    fn newest_known(&self, ds: &str, known: &HashMap<String, (String, Files)>) -> Option<String> {
        self.snaps
            .iter()
            .filter(|(n, g)| n.split('@').next() == Some(ds) && known.contains_key(g))
            .map(|(_, g)| g.clone())
            .next_back()
    }

    fn newest(&self, ds: &str) -> Option<String> {
        self.snaps
            .iter()
            .filter(|(n, _)| n.split('@').next() == Some(ds))
            .map(|(_, g)| g.clone())
            .next_back()
    }
}

const OBSERVE: &str = r#"echo '#snaps'; zfs list -H -p -t snapshot -o name,guid -s createtxg -r zpool1 zpool2
echo '#writable'; zfs list -H -o name,readonly -t filesystem -r zpool1 zpool2 | awk '$2 == "off" && $1 !~ /zfs-nfs-replica-quarantine/ { print $1 }'
echo '#files'; for ds in zpool1/a zpool1/a/b zpool2/c; do
  [ "$(zfs get -H -o value mounted $ds 2>/dev/null)" = yes ] || continue
  echo "@$ds"; for f in /$ds/f*; do [ -f "$f" ] && echo "${f##*/} $(stat -c %s "$f") $(head -n1 "$f")"; done
done
echo '#procs'; pgrep -a -x zfs-nfs-replica; pgrep -a -f '[z]fs (send|recv|receive)'; true"#;

fn parse_obs(out: &str) -> Obs {
    let mut o = Obs::default();
    let mut sec = "";
    let mut ds = String::new();
    for l in out.lines() {
        if let Some(s) = l.strip_prefix('#') {
            sec = match s {
                "snaps" => "snaps",
                "writable" => "writable",
                "files" => "files",
                "procs" => "procs",
                _ => sec,
            };
            if sec == s {
                continue;
            }
        }
        match sec {
            "snaps" => {
                let mut f = l.split('\t');
                if let (Some(n), Some(g)) = (f.next(), f.next()) {
                    o.snaps.push((n.to_string(), g.to_string()));
                }
            }
            "writable" if !l.is_empty() => o.writable.push(l.to_string()),
            "files" => {
                if let Some(d) = l.strip_prefix('@') {
                    ds = d.to_string();
                    o.files.entry(ds.clone()).or_default();
                } else if let Some((f, rest)) = l.split_once(' ') {
                    o.files
                        .entry(ds.clone())
                        .or_default()
                        .insert(f.to_string(), rest.to_string());
                }
            }
            "procs" if !l.is_empty() => o.procs.push(l.to_string()),
            _ => {}
        }
    }
    o
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ev {
    WriteSmall,
    WriteBig,
    Delete,
    Rename,
    Snapshot,
    SanoidTake,
    SanoidPrune,
    Timer,
    Migrate,
    Crash,
    CrashMidTransfer,
    LinkDown,
    LinkUp,
    Start,
}

pub struct Life<'a> {
    lab: &'a Lab,
    rng: Rng,
    pub seed: u64,
    step: usize,
    up: [bool; 2],
    /// The node whose replication link is cut.
    link_down: Option<usize>,
    /// Where the guest runs (it always runs somewhere: a crashed master's
    /// guest is recovered at once on the other node).
    master: usize,
    /// What the master's tracked datasets hold.
    model: BTreeMap<String, Files>,
    /// guid -> (dataset, its files) of every snapshot taken on a master.
    content: HashMap<String, (String, Files)>,
    /// guid -> its names on each node when last seen there.
    seen: HashMap<String, [Vec<String>; 2]>,
    /// The last observation of each node (kept while it is down).
    last: [Obs; 2],
    /// Whether the node has been a standby only since it last converged
    /// (its data is exactly what it received).
    clean: [bool; 2],
    log: Vec<String>,
    pub counts: BTreeMap<String, usize>,
    /// What the event's commands said, shown with a fault.
    ctx: String,
    /// The master's runs in a row that failed transiently with its peer
    /// reachable (one is allowed: "the next run retries").
    transient: usize,
    pub resolves: usize,
    pub quiet_rounds: usize,
    /// Old file versions read back from snapshots.
    pub versions_read: usize,
    /// The largest size (bytes in files) of each tracked dataset since the
    /// cluster last converged.
    peak: BTreeMap<String, u64>,
    /// Size-guard refusals of real deletes that the operator accepted.
    pub accepted: usize,
}

/// Bytes in a dataset's files, as the model has them.
fn model_size(files: &Files) -> u64 {
    files
        .values()
        .filter_map(|v| v.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `zfs-nfs-replica run ARGS` on node `n` as the timer runs it, killed
/// (exit 124/137) if it outlives its own deadlines.
fn run_bounded(lab: &Lab, n: usize, args: &str) -> Out {
    lab.sh_timeout(
        NODES[n],
        &format!("JOURNAL_STREAM=8:1 timeout -k 5 170 /usr/bin/zfs-nfs-replica run {args}"),
        Duration::from_secs(200),
    )
}

fn other(n: usize) -> usize {
    1 - n
}

impl<'a> Life<'a> {
    /// Fresh pools, the guest on the first node, both configured; the
    /// datasets made, filled and replicated once.
    pub fn new(lab: &'a Lab, seed: u64) -> Life<'a> {
        lab.fresh_pools();
        lab.place_guest(NODES[0]);
        for n in NODES {
            lab.configure(
                n,
                "[timeouts]\nstall = \"10s\"\nkill_grace = \"2s\"\n[hook]\nhandover_timeout = \"120s\"\n",
            );
            lab.ok(
                n,
                &format!(
                    "cat > /etc/sanoid/sanoid.conf <<'EOF'\n{SANOID_CONF}EOF\nrm -rf /var/cache/sanoid"
                ),
            );
        }
        let mut life = Life {
            lab,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            seed,
            step: 0,
            up: [true, true],
            link_down: None,
            master: 0,
            model: BTreeMap::new(),
            content: HashMap::new(),
            seen: HashMap::new(),
            last: [Obs::default(), Obs::default()],
            clean: [false, true],
            log: Vec::new(),
            counts: BTreeMap::new(),
            ctx: String::new(),
            transient: 0,
            resolves: 0,
            quiet_rounds: 0,
            versions_read: 0,
            peak: BTreeMap::new(),
            accepted: 0,
        };
        let mut s = String::from("set -e; zfs create -p zpool1/a/b; zfs create zpool2/c\n");
        for ds in TRACKED {
            for i in 0..3 {
                s += &format!("echo init-{i} > /{ds}/f{i}\n");
            }
        }
        s += "zfs snapshot -r zpool1@life-0 && zfs snapshot -r zpool2@life-0";
        lab.ok(NODES[0], &s);
        for ds in TRACKED {
            let mut f = Files::new();
            for i in 0..3 {
                let t = format!("init-{i}");
                f.insert(format!("f{i}"), format!("{} {t}", t.len() + 1));
            }
            life.model.insert(ds.to_string(), f);
        }
        life.note("setup".into());
        let out = lab.replica(NODES[0], "run --overwrite-empty-target");
        assert_eq!(out.code, Some(0), "first run: {}", out.all());
        let out = lab.replica(NODES[1], "run");
        assert_eq!(out.code, Some(1), "{}", out.all());
        life.check_all(Ev::Timer, &[0]);
        life
    }

    fn note(&mut self, s: String) {
        eprintln!("[life {}] {s}", self.step);
        self.log.push(format!("{:>4} {s}", self.step));
    }

    fn fault(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(25).collect();
        let tail: Vec<String> = tail.into_iter().rev().cloned().collect();
        panic!(
            "life test fault at step {} (LIFE_SEED={}): {what}\nlast events:\n{}\n--- the event's commands said:\n{}",
            self.step,
            self.seed,
            tail.join("\n"),
            self.ctx
        );
    }

    fn observe(&self, n: usize) -> Obs {
        let o = self
            .lab
            .sh_timeout(NODES[n], OBSERVE, Duration::from_secs(60));
        if o.code != Some(0) {
            self.fault(&format!("observing {}: {}", NODES[n], o.all()));
        }
        parse_obs(&o.stdout)
    }

    fn sh(&self, n: usize, script: &str) -> Out {
        self.lab
            .sh_timeout(NODES[n], script, Duration::from_secs(240))
    }

    fn must(&self, n: usize, script: &str) -> String {
        let o = self.sh(n, script);
        if o.code != Some(0) {
            self.fault(&format!("on {}: {script}: {}", NODES[n], o.all()));
        }
        o.stdout
    }

    /// The guest placed on `node` with `status`, as the API and every up
    /// node's `.vmlist` say.
    fn place(&self, node: usize, status: &str) {
        self.lab.pve.set(|s| {
            s.guest_node = Some(NODES[node].to_string());
            s.guest_status = status.to_string();
            s.crm_state = "started".into();
            s.lock = None;
            s.quorate = true;
        });
        let vmlist = format!(
            r#"{{"version":{v},"ids":{{"103":{{"node":"{n}","type":"lxc","version":3}}}}}}"#,
            v = self.step + 10,
            n = NODES[node]
        );
        for m in 0..2 {
            if self.up[m] {
                self.must(m, &format!("printf '%s\\n' '{vmlist}' > /etc/pve/.vmlist"));
            }
        }
    }

    fn set_online(&self, n: usize, online: bool) {
        self.lab.pve.set(|s| {
            if let Some(x) = s.nodes.get_mut(NODES[n]) {
                x.online = online;
            }
        });
    }

    /// Observe every up node after an event in which `masters` were the
    /// only nodes allowed to make snapshots, and check the invariants.
    fn check_all(&mut self, ev: Ev, masters: &[usize]) {
        let mut now = self.last.clone();
        for n in 0..2 {
            if self.up[n] {
                now[n] = self.observe(n);
            }
        }
        // New snapshots: only where allowed; their content is the model's.
        // Masters first: a snapshot one made may already be on the other.
        let mut order: Vec<usize> = masters.to_vec();
        order.extend((0..2).filter(|n| !masters.contains(n)));
        let mut fresh = std::collections::HashSet::new();
        for n in order {
            if !self.up[n] {
                continue;
            }
            for (name, guid) in &now[n].snaps {
                if self.seen.contains_key(guid) || !fresh.insert(guid.clone()) {
                    continue;
                }
                let (ds, snap) = name.split_once('@').unwrap_or((name, ""));
                if ds.contains(QUARANTINE) || snap.starts_with(QUARANTINE) {
                    continue; // resolve's capture of divergent data
                }
                if !masters.contains(&n) {
                    self.fault(&format!(
                        "{} made a snapshot while it was a standby: {name} ({guid})",
                        NODES[n]
                    ));
                }
                if let Some(f) = self.model.get(ds) {
                    self.content
                        .insert(guid.clone(), (ds.to_string(), f.clone()));
                }
            }
        }
        // Nothing lost: every guid still somewhere, unless sanoid pruned it.
        let mut names: HashMap<String, [Vec<String>; 2]> = HashMap::new();
        for n in 0..2 {
            for (name, guid) in &now[n].snaps {
                names.entry(guid.clone()).or_default()[n].push(name.clone());
            }
        }
        let mut gone = Vec::new();
        for (guid, was) in &self.seen {
            if names.contains_key(guid) {
                continue;
            }
            let pruned = ev == Ev::SanoidPrune
                && was.iter().flatten().all(|n| {
                    n.split('@')
                        .nth(1)
                        .is_some_and(|s| s.starts_with("autosnap_"))
                });
            if !pruned {
                gone.push(format!("{guid} (last seen as {was:?})"));
            }
        }
        if !gone.is_empty() {
            self.fault(&format!("snapshots lost: {}", gone.join(", ")));
        }
        self.seen = names;
        // Never two writers.
        for n in 0..2 {
            if !self.up[n] {
                continue;
            }
            let o = &now[n];
            if n == self.master && self.up[n] {
                let missing: Vec<&str> = TRACKED
                    .iter()
                    .copied()
                    .filter(|d| !o.writable.iter().any(|w| w == d))
                    .collect();
                if !missing.is_empty() {
                    self.fault(&format!(
                        "the master {} is not writable: read-only {missing:?}",
                        NODES[n]
                    ));
                }
                for ds in TRACKED {
                    let got = o.files.get(ds).cloned().unwrap_or_default();
                    if got != self.model[ds] {
                        self.fault(&format!(
                            "the master {} serves {ds} = {got:?}, written {:?}",
                            NODES[n], self.model[ds]
                        ));
                    }
                }
            } else if !o.writable.is_empty() {
                self.fault(&format!(
                    "a second writer: the standby {} has writable {:?}",
                    NODES[n], o.writable
                ));
            }
        }
        self.last = now;
        for (ds, files) in &self.model {
            let size = model_size(files);
            let p = self.peak.entry(ds.clone()).or_default();
            *p = (*p).max(size);
        }
    }

    fn no_leftovers(&self, n: usize) {
        let o = self.observe(n);
        if !o.procs.is_empty() {
            // A run's children get `kill_grace` to go.
            std::thread::sleep(Duration::from_secs(3));
            let o = self.observe(n);
            if !o.procs.is_empty() {
                self.fault(&format!("left running on {}: {:?}", NODES[n], o.procs));
            }
        }
    }

    fn pick(&mut self) -> Ev {
        use Ev::*;
        let both = self.up[0] && self.up[1];
        let linked = both && self.link_down.is_none();
        let table: [(Ev, usize); 14] = [
            (WriteSmall, 8),
            (WriteBig, 2),
            (Delete, 3),
            (Rename, 2),
            (Snapshot, 3),
            (SanoidTake, 4),
            (SanoidPrune, 2),
            (Timer, 7),
            (Migrate, if linked { 3 } else { 0 }),
            (Crash, if both { 1 } else { 0 }),
            (CrashMidTransfer, if linked { 1 } else { 0 }),
            (LinkDown, if linked { 1 } else { 0 }),
            (LinkUp, if self.link_down.is_some() { 3 } else { 0 }),
            (Start, if both { 0 } else { 8 }),
        ];
        let total: usize = table.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.below(total);
        for (e, w) in table {
            if r < w {
                return e;
            }
            r -= w;
        }
        WriteSmall
    }

    fn random_up(&mut self) -> usize {
        if self.up[0] && self.up[1] {
            self.rng.below(2)
        } else if self.up[0] {
            0
        } else {
            1
        }
    }

    /// Play `events` events, with a quiet period every 20 and at the end.
    pub fn play(&mut self, events: usize) {
        for i in 0..events {
            self.step = i + 1;
            let ev = self.pick();
            *self.counts.entry(format!("{ev:?}")).or_default() += 1;
            self.event(ev);
            if (i + 1) % 20 == 0 || i + 1 == events {
                self.quiet();
            }
        }
    }

    fn event(&mut self, ev: Ev) {
        self.ctx.clear();
        let m = self.master;
        match ev {
            Ev::WriteSmall | Ev::WriteBig => {
                let ds = TRACKED[self.rng.below(TRACKED.len())];
                let f = format!("f{}", self.rng.below(FILES));
                let token = format!("s{}-{}", self.step, self.rng.below(1000));
                let mut ev = ev;
                let (script, size) = if ev == Ev::WriteBig {
                    let mib = 8 + self.rng.below(17);
                    (
                        format!("{{ echo {token}; head -c {mib}M /dev/urandom; }} > /{ds}/{f}"),
                        token.len() + 1 + mib * 1024 * 1024,
                    )
                } else {
                    (format!("echo {token} > /{ds}/{f}"), token.len() + 1)
                };
                // The lab's pools are 512 MiB, and what the tool keeps (held
                // bases, every quarantine) only grows: found by seed 25 at
                // step 236 (ENOSPC, no fault of the tool). Near full, the
                // write is a small one, as an operator warned by the
                // free-space check would keep it.
                let (script, size) = if ev == Ev::WriteBig && {
                    let pool = ds.split('/').next().unwrap_or(ds);
                    let avail = self.must(m, &format!("zfs get -Hp -o value available {pool}"));
                    avail.trim().parse::<usize>().unwrap_or(0) < size + (128 << 20)
                } {
                    ev = Ev::WriteSmall;
                    self.note(format!("{} nearly full: a small write instead", NODES[m]));
                    (format!("echo {token} > /{ds}/{f}"), token.len() + 1)
                } else {
                    (script, size)
                };
                self.note(format!("{ev:?} {}:/{ds}/{f}", NODES[m]));
                self.must(m, &script);
                self.model
                    .get_mut(ds)
                    .unwrap()
                    .insert(f, format!("{size} {token}"));
                self.check_all(ev, &[m]);
            }
            Ev::Delete => {
                let ds = TRACKED[self.rng.below(TRACKED.len())];
                let f = format!("f{}", self.rng.below(FILES));
                self.note(format!("delete {}:/{ds}/{f}", NODES[m]));
                self.must(m, &format!("rm -f /{ds}/{f}"));
                self.model.get_mut(ds).unwrap().remove(&f);
                self.check_all(ev, &[m]);
            }
            Ev::Rename => {
                let ds = TRACKED[self.rng.below(TRACKED.len())];
                let have: Vec<String> = self.model[ds].keys().cloned().collect();
                if have.is_empty() {
                    return self.event(Ev::WriteSmall);
                }
                let from = have[self.rng.below(have.len())].clone();
                let mut to = format!("f{}", self.rng.below(FILES));
                if to == from {
                    // A rename onto itself is no rename: take the next name.
                    let n: usize = from[1..].parse().unwrap_or(0);
                    to = format!("f{}", (n + 1) % FILES);
                }
                self.note(format!("mv {}:/{ds}/{from} {to}", NODES[m]));
                self.must(m, &format!("mv -f /{ds}/{from} /{ds}/{to}"));
                let files = self.model.get_mut(ds).unwrap();
                let v = files.remove(&from).unwrap();
                files.insert(to, v);
                self.check_all(ev, &[m]);
            }
            Ev::Snapshot => {
                let pool = ["zpool1", "zpool2"][self.rng.below(2)];
                self.note(format!(
                    "zfs snapshot -r {pool}@manual-{} on {}",
                    self.step, NODES[m]
                ));
                self.must(m, &format!("zfs snapshot -r {pool}@manual-{}", self.step));
                self.check_all(ev, &[m]);
            }
            Ev::SanoidTake | Ev::SanoidPrune => {
                let n = self.random_up();
                let what = if ev == Ev::SanoidTake {
                    "--take-snapshots"
                } else {
                    "--prune-snapshots"
                };
                self.note(format!("sanoid {what} on {}", NODES[n]));
                // sanoid's cache of the snapshot list would hide what the
                // test does between two events (cron runs are minutes apart).
                let o = self.sh(
                    n,
                    &format!("rm -rf /var/cache/sanoid; timeout 120 sanoid {what} 2>&1"),
                );
                if o.code != Some(0) && !o.stdout.contains("could not remove") {
                    self.note(format!("sanoid said ({:?}): {}", o.code, o.stdout.trim()));
                }
                self.check_all(ev, &[m]);
            }
            Ev::Timer => {
                let n = self.random_up();
                self.timer(n);
                self.check_all(ev, &[m]);
            }
            Ev::Migrate => self.migrate(),
            Ev::Crash => {
                let n = self.rng.below(2);
                self.crash(n);
            }
            Ev::CrashMidTransfer => self.crash_mid_transfer(),
            Ev::LinkDown => {
                let n = self.rng.below(2);
                self.note(format!("link down on {}", NODES[n]));
                self.must(n, "ip link set eth1 down");
                self.link_down = Some(n);
                self.check_all(ev, &[m]);
            }
            Ev::LinkUp => {
                let n = self.link_down.take().unwrap();
                self.note(format!("link up on {}", NODES[n]));
                self.must(n, "ip link set eth1 up");
                self.check_all(ev, &[m]);
            }
            Ev::Start => {
                let n = if self.up[0] { 1 } else { 0 };
                self.start(n);
            }
        }
    }

    /// The systemd timer's run on node `n`; its exit code judged.
    fn timer(&mut self, n: usize) {
        let t = Instant::now();
        let o = run_bounded(self.lab, n, "");
        let took = t.elapsed().as_secs_f64();
        let code = o.code.unwrap_or(-1);
        self.note(format!(
            "run on {} ({}) -> {code} in {took:.1}s",
            NODES[n],
            if n == self.master {
                "master"
            } else {
                "standby"
            }
        ));
        if code == 124 || code == 137 || code == -1 {
            self.fault(&format!("run on {} did not end: {}", NODES[n], o.all()));
        }
        let peer_reachable = self.up[other(n)] && self.link_down.is_none();
        let ok = if n == self.master {
            if code == 3 && peer_reachable {
                self.transient += 1;
            } else {
                self.transient = 0;
            }
            match code {
                0 | 1 => true,
                3 => self.transient < 2,
                4 => {
                    self.resolve_divergence(n, &o);
                    true
                }
                _ => false,
            }
        } else {
            code == 1
        };
        if !ok {
            self.fault(&format!("run on {} exited {code}: {}", NODES[n], o.all()));
        }
        for k in 0..2 {
            if self.up[k] {
                self.no_leftovers(k);
            }
        }
    }

    /// Exit 4 on the master: `diverged` must name every reason, and each of
    /// its `resolve … --keep-divergent` lines, run as suggested, must end.
    fn resolve_divergence(&mut self, n: usize, run: &Out) {
        let d = self.lab.replica(NODES[n], "diverged");
        let mut cmds = Vec::new();
        for l in d.stdout.lines() {
            if let Some(rest) = l.trim().strip_prefix("keep it and re-sync, on ")
                && let Some((node, cmd)) = rest.split_once(": ")
            {
                cmds.push((node.to_string(), cmd.to_string()));
            }
        }
        if cmds.is_empty() && self.accept_real_shrink(n, run) {
            return;
        }
        if cmds.is_empty() {
            self.fault(&format!(
                "run on {} refused (4) and `diverged` suggests nothing:\n{}\n--- diverged:\n{}",
                NODES[n],
                run.all(),
                d.all()
            ));
        }
        for (node, cmd) in cmds {
            let Some(k) = NODES.iter().position(|x| *x == node) else {
                self.fault(&format!("diverged names an unknown node: {node}"));
            };
            self.note(format!("on {node}: {cmd}"));
            let o = self.lab.sh_timeout(
                NODES[k],
                &format!("JOURNAL_STREAM=8:1 timeout -k 5 300 /usr/bin/{cmd}"),
                Duration::from_secs(330),
            );
            if o.code != Some(0) {
                self.fault(&format!(
                    "`{cmd}` on {node} exited {:?}: {}",
                    o.code,
                    o.all()
                ));
            }
            self.resolves += 1;
        }
    }

    /// The size guards refused a pool, as designed, after the users
    /// deleted or overwrote most of a dataset's data: the operator, who
    /// knows it was meant (the model says so: the dataset the guard names
    /// holds less than 80% of what it held at its peak since the cluster
    /// last converged), runs the remedy the tool printed. Any other
    /// refusal is a fault.
    fn accept_real_shrink(&mut self, n: usize, run: &Out) -> bool {
        let text = run.all();
        // Every pool the guards refused (one remedy line each).
        let mut pools: Vec<String> = text
            .split("run --accept-size-change ")
            .skip(1)
            .filter_map(|r| r.split(|c: char| c == ')' || c.is_whitespace()).next())
            .map(str::to_string)
            .collect();
        pools.sort();
        pools.dedup();
        if pools.is_empty() {
            return false;
        }
        let mut all = Vec::new();
        for pool in &pools {
            let shrunk: Vec<&str> = TRACKED
                .iter()
                .copied()
                .filter(|ds| ds.starts_with(&format!("{pool}/")))
                .filter(|ds| {
                    let now = model_size(&self.model[*ds]);
                    let peak = self.peak.get(*ds).copied().unwrap_or(0);
                    (now as f64) < 0.8 * peak as f64 && text.contains(&format!("{ds} "))
                })
                .collect();
            if shrunk.is_empty() {
                return false;
            }
            all.extend(shrunk);
        }
        self.note(format!(
            "  the size guards refused {pools:?} after real deletes in {all:?}: the operator accepts"
        ));
        let flags: Vec<String> = pools
            .iter()
            .map(|p| format!("--accept-size-change {p}"))
            .collect();
        let o = run_bounded(self.lab, n, &flags.join(" "));
        if !matches!(o.code, Some(0) | Some(1)) {
            self.fault(&format!("run {}: {}", flags.join(" "), o.all()));
        }
        self.accepted += 1;
        true
    }

    /// A planned migration: the guest stops on the master (post-stop),
    /// starts on the other node (pre-start takes the last writes over).
    fn migrate(&mut self) {
        let (m, t) = (self.master, other(self.master));
        self.note(format!("migrate {} -> {}", NODES[m], NODES[t]));
        self.place(m, "stopped");
        let o = self.lab.replica(NODES[m], "hook 103 post-stop");
        if o.code != Some(0) {
            self.fault(&format!("post-stop on {}: {}", NODES[m], o.all()));
        }
        self.ctx += &format!("post-stop on {}:\n{}\n", NODES[m], o.all());
        self.place(t, "stopped");
        let t0 = Instant::now();
        let o = self.lab.replica(NODES[t], "hook 103 pre-start");
        let took = t0.elapsed().as_secs_f64();
        if o.code != Some(0) {
            self.fault(&format!("pre-start on {}: {}", NODES[t], o.all()));
        }
        self.ctx += &format!("pre-start on {}:\n{}\n", NODES[t], o.all());
        self.ctx += &self
            .sh(t, "cat /var/lib/zfs-nfs-replica/last-promotion.json")
            .stdout;
        self.place(t, "running");
        self.master = t;
        self.clean[t] = false;
        self.note(format!("  pre-start on {} took {took:.1}s", NODES[t]));
        // The new master must serve every last write (checked as the
        // master's files against the model).
        self.check_all(Ev::Migrate, &[m, t]);
        self.no_leftovers(m);
    }

    /// Node `n` loses power. If it was the master, HA starts the guest on
    /// the other node, whose pre-start promotes it without the dead node.
    fn crash(&mut self, n: usize) {
        self.note(format!(
            "crash {}{}",
            NODES[n],
            if n == self.master { " (master)" } else { "" }
        ));
        self.lab.kill(NODES[n]);
        self.up[n] = false;
        if self.link_down == Some(n) {
            self.link_down = None; // a boot brings the link up again
        }
        self.lab.pve.crash(NODES[n]);
        if n == self.master {
            self.failover(n);
        } else {
            self.check_all(Ev::Crash, &[self.master]);
        }
    }

    fn failover(&mut self, dead: usize) {
        let t = other(dead);
        let before = self.observe(t);
        self.place(t, "stopped");
        let o = self.lab.replica(NODES[t], "hook 103 pre-start");
        if o.code != Some(0) {
            self.fault(&format!(
                "pre-start on {} after a crash: {}",
                NODES[t],
                o.all()
            ));
        }
        self.ctx += &format!("pre-start on {}:\n{}\n", NODES[t], o.all());
        self.place(t, "running");
        let now = self.observe(t);
        // The promoted node serves its newest snapshot (a clean standby has
        // nothing else); that is now what the guest sees.
        for ds in TRACKED {
            let got = now.files.get(ds).cloned().unwrap_or_default();
            if self.clean[t] {
                let Some(g) = before.newest_known(ds, &self.content) else {
                    self.fault(&format!("{} has no snapshot of {ds} to serve", NODES[t]));
                };
                let want = &self.content[&g].1;
                if &got != want {
                    self.fault(&format!(
                        "promoted {} serves {ds} = {got:?}, its newest snapshot holds {want:?}",
                        NODES[t]
                    ));
                }
            }
            self.model.insert(ds.to_string(), got);
        }
        self.note(format!("  {} promoted without {}", NODES[t], NODES[dead]));
        self.master = t;
        self.clean[t] = false;
        self.check_all(Ev::Crash, &[t]);
    }

    /// A big write and a snapshot, the timer's run on the master, and one
    /// node killed while the stream flows.
    fn crash_mid_transfer(&mut self) {
        let m = self.master;
        let ds = TRACKED[self.rng.below(TRACKED.len())];
        let pool = ds.split('/').next().unwrap();
        let token = format!("big{}", self.step);
        let mib = 48;
        self.note(format!(
            "crash mid-transfer: {mib} MiB into {}:/{ds}",
            NODES[m]
        ));
        self.must(
            m,
            &format!(
                "{{ echo {token}; head -c {mib}M /dev/urandom; }} > /{ds}/f0 && zfs snapshot -r {pool}@manual-{}",
                self.step
            ),
        );
        self.model.get_mut(ds).unwrap().insert(
            "f0".into(),
            format!("{} {token}", token.len() + 1 + mib * 1024 * 1024),
        );
        self.check_all(Ev::Snapshot, &[m]);
        let victim = self.rng.below(2);
        let lab = self.lab;
        let (code, killed) = std::thread::scope(|s| {
            let h = s.spawn(|| run_bounded(lab, m, ""));
            let flowing = super::lab::wait_until(Duration::from_secs(90), || {
                h.is_finished()
                    || lab.sh(NODES[m], "pgrep -f '[z]fs send' >/dev/null").code == Some(0)
            });
            let killed = flowing && !h.is_finished();
            if killed {
                std::thread::sleep(Duration::from_millis(500 + 100 * self.rng.below(20) as u64));
                lab.kill(NODES[victim]);
            }
            let out = h.join().expect("run thread");
            (out, killed)
        });
        if !killed {
            self.note(format!(
                "  the run ended before a stream flowed: {:?}",
                code.code
            ));
            if !matches!(code.code, Some(0) | Some(1)) {
                self.fault(&format!("run: {}", code.all()));
            }
            self.check_all(Ev::Timer, &[m]);
            return;
        }
        self.note(format!("  killed {} mid-stream", NODES[victim]));
        self.up[victim] = false;
        self.lab.pve.crash(NODES[victim]);
        if victim == m {
            self.failover(m);
        } else {
            // The master's run notices its peer is gone, within its stall
            // limit, and cleans up.
            if !matches!(code.code, Some(3) | Some(0)) {
                self.fault(&format!(
                    "the master's run after its peer died: {:?} {}",
                    code.code,
                    code.all()
                ));
            }
            self.no_leftovers(m);
            self.check_all(Ev::Crash, &[m]);
        }
    }

    /// Boot a dead node: its boot unit makes it a standby, asking no one.
    fn start(&mut self, n: usize) {
        self.note(format!("boot {}", NODES[n]));
        self.lab.start(NODES[n]);
        self.up[n] = true;
        self.set_online(n, true);
        self.place(self.master, "running");
        let o = self.lab.replica(NODES[n], "standby");
        if o.code != Some(0) {
            self.fault(&format!("standby at boot on {}: {}", NODES[n], o.all()));
        }
        self.clean[n] = false;
        self.check_all(Ev::Start, &[self.master]);
    }

    /// Old file versions are still readable: up to six snapshots of a
    /// tracked dataset, picked at random among those taken on a master and
    /// now on a node where the dataset is mounted, read through
    /// `.zfs/snapshot` and compared with what was written then.
    fn read_old_versions(&mut self) {
        for n in 0..2 {
            let o = self.last[n].clone();
            let mut cands: Vec<(String, String)> = o
                .snaps
                .iter()
                .filter(|(name, g)| {
                    let ds = name.split('@').next().unwrap_or("");
                    o.files.contains_key(ds) && self.content.get(g).is_some_and(|(d, _)| d == ds)
                })
                .cloned()
                .collect();
            let mut script = String::new();
            let mut picked = Vec::new();
            for _ in 0..3 {
                if cands.is_empty() {
                    break;
                }
                let (name, guid) = cands.swap_remove(self.rng.below(cands.len()));
                let (ds, snap) = name.split_once('@').unwrap();
                script += &format!(
                    "echo '@{guid}'; for f in /{ds}/.zfs/snapshot/{snap}/f*; do [ -f \"$f\" ] && echo \"${{f##*/}} $(stat -c %s \"$f\") $(head -n1 \"$f\")\"; done\n"
                );
                picked.push(guid);
            }
            if picked.is_empty() {
                continue;
            }
            let out = self.must(n, &script);
            let mut got: BTreeMap<String, Files> = BTreeMap::new();
            let mut cur = String::new();
            for l in out.lines() {
                if let Some(g) = l.strip_prefix('@') {
                    cur = g.to_string();
                    got.entry(cur.clone()).or_default();
                } else if let Some((f, rest)) = l.split_once(' ') {
                    got.entry(cur.clone())
                        .or_default()
                        .insert(f.to_string(), rest.to_string());
                }
            }
            for g in picked {
                let want = &self.content[&g].1;
                if got.get(&g) != Some(want) {
                    self.fault(&format!(
                        "snapshot {g} on {} holds {:?}, {:?} was written",
                        NODES[n],
                        got.get(&g),
                        want
                    ));
                }
                self.versions_read += 1;
            }
        }
    }

    /// Both nodes up, the link up, then the timer on both until they agree
    /// (at most six rounds): the newest snapshot of every dataset the same.
    fn quiet(&mut self) {
        self.note("quiet period".into());
        for n in 0..2 {
            if !self.up[n] {
                self.start(n);
            }
        }
        if let Some(n) = self.link_down.take() {
            self.must(n, "ip link set eth1 up");
        }
        let (m, s) = (self.master, other(self.master));
        for round in 1..=6 {
            self.quiet_rounds += 1;
            self.timer(m);
            self.check_all(Ev::Timer, &[m]);
            self.timer(s);
            self.check_all(Ev::Timer, &[m]);
            let (a, b) = (&self.last[m], &self.last[s]);
            let all_same = TRACKED
                .iter()
                .chain(["zpool1", "zpool2"].iter())
                .all(|ds| a.newest(ds).is_some() && a.newest(ds) == b.newest(ds));
            if all_same {
                self.note(format!("  converged after {round} round(s)"));
                // What the size guards compare with from now on: the live
                // data, and the replica's newest snapshot (which may hold
                // data deleted since it was taken).
                let newest = &self.last[m];
                let replicated = |ds: &str| {
                    newest
                        .newest(ds)
                        .and_then(|g| self.content.get(&g))
                        .map_or(0, |(_, f)| model_size(f))
                };
                self.peak = self
                    .model
                    .iter()
                    .map(|(ds, f)| (ds.clone(), model_size(f).max(replicated(ds))))
                    .collect();
                self.clean[s] = true;
                self.read_old_versions();
                return;
            }
        }
        let diff: Vec<String> = TRACKED
            .iter()
            .map(|ds| {
                format!(
                    "{ds}: {:?} vs {:?}",
                    self.last[m].newest(ds),
                    self.last[s].newest(ds)
                )
            })
            .collect();
        self.fault(&format!(
            "no convergence after 6 quiet rounds: {}",
            diff.join("; ")
        ));
    }
}
