//! The real-ZFS lab, from the test's side: boots the qemu nodes once per
//! test binary (tests/lab/build.sh + boot.sh), serializes scenarios, gives
//! each scenario fresh pools, and runs commands on the nodes over ssh.
//! Most scenarios use a two-node lab ([`Lab::get`]); the three-node one
//! ([`Lab::get_three`]) runs alone.
//!
//! Teardown: a watchdog process, started with the lab, stops the nodes (by
//! pid, tests/lab/stop.sh) as soon as the test process is gone, however it
//! ended (success, panic, abort or SIGKILL).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const NODES: [&str; 2] = ["pve1", "pve2"];
/// The nodes of the three-node lab.
pub const THREE: [&str; 3] = ["pve1", "pve2", "pve3"];

/// A node's address on the lab's private link (tests/lab/boot.sh).
pub fn link_ip(node: &str) -> &'static str {
    match node {
        "pve1" => "192.168.100.10",
        "pve2" => "192.168.100.20",
        "pve3" => "192.168.100.30",
        other => panic!("no lab node {other}"),
    }
}
pub const POOLS: [&str; 2] = ["zpool1", "zpool2"];

/// Every hold on every snapshot of both pools (`zfs holds` takes snapshot names).
pub const ALL_HOLDS: &str = "zfs list -H -t snapshot -o name -r zpool1 zpool2 | tr '\\n' '\\0' | xargs -0 -r zfs holds -H | cut -f1,2 | sort";

/// The sanoid.conf every scenario starts from.
pub const SANOID_CONF: &str = "# NFS pools\n[zpool1]\n\tuse_template = production\n\trecursive = yes\n\n[zpool2]\n\tuse_template = production\n\trecursive = yes\n\tautosnap = yes\n\n[template_production]\n\tfrequently = 0\n\thourly = 36\n\tdaily = 30\n\tautosnap = yes\n\tautoprune = yes\n";

pub struct Lab {
    /// Its nodes, the first one the guest's home ([`NODES`] or [`THREE`]).
    pub nodes: &'static [&'static str],
    pub run_dir: PathBuf,
    pub ssh_config: PathBuf,
    /// boot.sh's settings for this lab (to boot a node again).
    envs: Vec<(&'static str, String)>,
    /// The tool's binary as the nodes see it (`/mnt/host/...`).
    bin: String,
    /// The replication key pair as the nodes see it (`/mnt/host/...`,
    /// private part) and its public line.
    replica_key: (String, String),
    /// The Proxmox API stand-in; each node reaches its own listener at
    /// https://10.0.2.100:8006.
    pub pve: super::pve::FakePve,
}

#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// What a node keeps on its root filesystem that the tool or a scenario
/// writes (on the node's `labsys` disk: it survives a crash).
const PERSISTED: &str = "etc/zfs-nfs-replica etc/sanoid etc/pve var/lib/zfs-nfs-replica";

static LABS: OnceLock<Vec<Mutex<Option<Lab>>>> = OnceLock::new();
static LAB_THREE: Mutex<Option<Lab>> = Mutex::new(None);

/// How many labs scenarios may use at once: `LAB_PARALLEL`, else 2 on a
/// machine with 2 or more cores. One lab keeps about one core busy (its two
/// nodes mostly take turns), so a second one uses the rest of a 2-core host.
pub fn parallel() -> usize {
    std::env::var("LAB_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(2))
                .unwrap_or(1)
        })
        .max(1)
}

/// The lab, held by one scenario. On drop, the scenario's name (the test
/// thread's name) and how long it held the lab are appended to
/// `$LAB_TIMINGS` (tests/run.sh prints them as a table at the end).
pub struct Held {
    guard: MutexGuard<'static, Option<Lab>>,
    /// The three-node lab: every two-node lab's slot, held so that no
    /// other scenario runs beside it (its three machines use the host's
    /// cores), and stopped when the scenario is done.
    others: Vec<MutexGuard<'static, Option<Lab>>>,
    started: Instant,
}

impl std::ops::Deref for Held {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.guard.as_ref().expect("a held lab is booted")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let name = std::thread::current()
            .name()
            .unwrap_or("(unnamed)")
            .to_string();
        let name = if std::thread::panicking() {
            format!("{name} (FAILED)")
        } else {
            name
        };
        record_timing(&name, self.started.elapsed());
        if !self.others.is_empty()
            && let Some(lab) = self.guard.take()
        {
            lab.stop();
        }
    }
}

/// One `name<TAB>seconds` line in `$LAB_TIMINGS`, if set.
pub fn record_timing(name: &str, took: Duration) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("LAB_TIMINGS") else {
        return;
    };
    eprintln!("[lab] {name}: {:.1}s", took.as_secs_f64());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{name}\t{:.1}", took.as_secs_f64());
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// The binary under test, copied into the run directory without its debug
/// info. The nodes copy it into RAM at boot: executed straight from the 9p
/// share, every page the run touches is a 9p read under TCG (2.4 s instead of
/// 0.5 s for a run that only asks the API).
fn stage_binary(run_dir: &Path) -> String {
    let host = std::env::var_os("LAB_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_zfs-nfs-replica")));
    let staged = run_dir.join("zfs-nfs-replica");
    let st = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&host)
        .arg(&staged)
        .status()
        .expect("objcopy (binutils)");
    assert!(st.success(), "objcopy --strip-debug failed: {st}");
    let rel = staged
        .strip_prefix(target_dir())
        .expect("the run dir lives in the cargo target dir");
    format!("/mnt/host/{}", rel.display())
}

/// The replication key, generated for this lab (as the README's install
/// steps make one): its private part as the nodes see it, and its public
/// line. Each node's `authorized_keys` restricts it to `serve`.
fn replica_key(run_dir: &Path) -> (String, String) {
    let key = run_dir.join("replica_ed25519");
    if !key.exists() {
        let st = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "zfs-nfs-replica",
                "-f",
            ])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(st.success(), "ssh-keygen: {st}");
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let rel = key
        .strip_prefix(target_dir())
        .expect("the run dir lives in the cargo target dir");
    (
        format!("/mnt/host/{}", rel.display()),
        public.trim().to_string(),
    )
}

/// A UDP port whose next port is free too (the link's two ends).
fn free_udp_pair() -> u16 {
    loop {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65535 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script(name: &str, envs: &[(&str, String)]) {
    let started = Instant::now();
    let mut c = Command::new("bash");
    c.arg(repo().join("tests/lab").join(name));
    for (k, v) in envs {
        c.env(k, v);
    }
    // Its messages are the harness's log, never part of a test's or a
    // bench's output (the bench prints its report on stdout).
    c.stdout(std::io::stderr());
    let st = c
        .status()
        .unwrap_or_else(|e| panic!("tests/lab/{name}: {e}"));
    assert!(st.success(), "tests/lab/{name} failed ({st})");
    eprintln!("[lab] {name} took {:.1}s", started.elapsed().as_secs_f64());
}

/// The lab image, built (or found up to date) once per test process.
pub fn build_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| script("build.sh", &[]));
}

/// Where tests/lab/build.sh keeps its chroots and images (tests/lab/lib.sh).
pub fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("LAB_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("zfs-nfs-replica-lab")
}

impl Lab {
    /// A lab of its own for the calling scenario: the first free one of
    /// [`parallel`] labs, booted on first use. Scenarios on different labs
    /// run at the same time (each lab is its own pair of machines); holding
    /// the guard keeps the lab for this scenario alone. The guard records
    /// how long the scenario held it (see [`Held`]).
    pub fn get() -> Held {
        let slots = LABS.get_or_init(|| (0..parallel()).map(|_| Mutex::new(None)).collect());
        loop {
            for (i, slot) in slots.iter().enumerate() {
                let mut guard = match slot.try_lock() {
                    Ok(g) => g,
                    // A panicking scenario poisons the mutex; the next one
                    // starts from fresh pools anyway.
                    Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => continue,
                };
                if guard.is_none() {
                    let t = Instant::now();
                    *guard = Some(Lab::boot(&i.to_string(), &NODES));
                    record_timing(&format!("(lab {i} boot)"), t.elapsed());
                }
                return Held {
                    guard,
                    others: Vec::new(),
                    started: Instant::now(),
                };
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The three-node lab (pve1, pve2, pve3 on one link, each with its
    /// own API stand-in listener), for the calling scenario alone: it waits
    /// until no two-node scenario runs, holds every two-node lab meanwhile,
    /// boots the three nodes, and stops them when the scenario is done.
    pub fn get_three() -> Held {
        let slots = LABS.get_or_init(|| (0..parallel()).map(|_| Mutex::new(None)).collect());
        let others = slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut guard = LAB_THREE.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let t = Instant::now();
            *guard = Some(Lab::boot("three", &THREE));
            record_timing("(three-node lab boot)", t.elapsed());
        }
        Held {
            guard,
            others,
            started: Instant::now(),
        }
    }

    fn boot(slot: &str, nodes: &'static [&'static str]) -> Lab {
        build_image();
        let addrs: Vec<(&str, &str)> = nodes.iter().map(|n| (*n, link_ip(n))).collect();
        let pve = super::pve::FakePve::start(&addrs, 103);
        let run_dir = target_dir()
            .join("lab")
            .join(format!("run-test-{}-{slot}", std::process::id()));
        let mut envs = vec![
            ("LAB_RUN_DIR", run_dir.display().to_string()),
            ("LAB_NODES", nodes.join(" ")),
            ("LAB_LINK_PORT", free_udp_pair().to_string()),
            // Pools on disks that survive a node being killed and booted
            // again (tests/lab/guest/init).
            ("LAB_DISKS", "1".to_string()),
            ("LAB_SHARE", target_dir().display().to_string()),
        ];
        for (n, (ssh, api)) in nodes.iter().zip([
            ("LAB_SSH_PORT_A", "LAB_API_PORT_A"),
            ("LAB_SSH_PORT_B", "LAB_API_PORT_B"),
            ("LAB_SSH_PORT_C", "LAB_API_PORT_C"),
        ]) {
            envs.push((ssh, free_port().to_string()));
            envs.push((api, pve.ports[*n].to_string()));
        }
        // The watchdog first: if boot.sh itself dies half-way, it still cleans up.
        std::fs::create_dir_all(&run_dir).unwrap();
        let stop = repo().join("tests/lab/stop.sh");
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; LAB_RUN_DIR='{run}' bash '{stop}' >/dev/null 2>&1; rm -rf '{run}'",
            pid = std::process::id(),
            run = run_dir.display(),
            stop = stop.display()
        );
        // `setsid -f` forks the watchdog into its own session and returns at
        // once: it outlives this process by design.
        let st = Command::new("setsid")
            .args(["-f", "sh", "-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the lab watchdog");
        assert!(st.success(), "setsid -f failed: {st}");
        script("boot.sh", &envs);
        let bin = stage_binary(&run_dir);
        let replica_key = replica_key(&run_dir);
        let lab = Lab {
            nodes,
            ssh_config: run_dir.join("ssh_config"),
            run_dir,
            pve,
            envs,
            bin,
            replica_key,
        };
        for n in nodes {
            lab.install(n);
        }
        lab.place_guest(nodes[0]);
        lab
    }

    /// Stop the nodes (tests/lab/stop.sh) and remove the run directory.
    fn stop(self) {
        let st = Command::new("bash")
            .arg(repo().join("tests/lab/stop.sh"))
            .env("LAB_RUN_DIR", &self.run_dir)
            .stdout(std::io::stderr())
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!("[lab] stopping {}: {st:?}", self.run_dir.display());
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }

    /// The binary (kept in RAM, as the package would install it on a
    /// node's disk: put back after a reboot), the cluster CA where Proxmox
    /// keeps it, the API token (0600) where the package documents it
    /// (both on the node's persistent disk), and the replication key,
    /// restricted to `serve` in `authorized_keys` as the README installs it
    /// (the harness's own key keeps its full shell).
    fn install(&self, n: &str) {
        self.ok(n, &format!(
            "mkdir -p /etc/zfs-nfs-replica /usr/bin /etc/pve && install -m 755 {bin} /usr/bin/zfs-nfs-replica && /usr/bin/zfs-nfs-replica --version && \
             cat > /etc/pve/pve-root-ca.pem <<'EOF'\n{ca}\nEOF\n\
             (umask 077; printf '%s\\n' '{token}' > /etc/zfs-nfs-replica/pve-token) && \
             install -m 600 {key} /root/.ssh/replica_ed25519 && \
             {{ grep -qF '{public}' /root/.ssh/authorized_keys || \
                echo 'command=\"/usr/bin/zfs-nfs-replica serve\",restrict {public}' >> /root/.ssh/authorized_keys; }}",
            bin = self.bin,
            ca = self.pve.ca_pem,
            token = self.pve.token,
            key = self.replica_key.0,
            public = self.replica_key.1,
        ));
    }

    /// The replication key's public line (for another user's
    /// `authorized_keys`).
    pub fn replica_public_key(&self) -> &str {
        &self.replica_key.1
    }

    /// Kill a node as a power cut would (its qemu, SIGKILL): nothing in its
    /// RAM survives; its disks do.
    pub fn kill(&self, n: &str) {
        let pid =
            std::fs::read_to_string(self.run_dir.join(format!("{n}.pid"))).unwrap_or_default();
        let pid: i32 = pid.trim().parse().expect("the node's qemu pid");
        // SAFETY: kill(2) of the pid boot.sh recorded for this lab's node.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        assert!(
            wait_until(Duration::from_secs(10), || !Path::new(&format!(
                "/proc/{pid}"
            ))
            .exists()),
            "{n}'s qemu did not die"
        );
    }

    /// Boot a killed node again (its pools imported from its disks, its
    /// state and config as it left them) and put the binary back.
    pub fn start(&self, n: &str) {
        let mut envs = self.envs.clone();
        envs.push(("LAB_ONLY", n.to_string()));
        script("boot.sh", &envs);
        self.install(n);
    }

    /// Where the cluster places the guest, as every node's API and its
    /// cluster filesystem (`/etc/pve/.vmlist`, the same on every node) say.
    /// Resets every fault and scenario step of the API stand-in.
    pub fn place_guest(&self, node: &str) {
        self.pve.reset();
        self.pve.migrate(node);
        let vmlist = format!(
            r#"{{"version":7,"ids":{{"103":{{"node":"{node}","type":"lxc","version":3}}}}}}"#
        );
        self.on_each(|n| {
            self.ok(n, &format!("printf '%s\\n' '{vmlist}' > /etc/pve/.vmlist"));
        });
    }

    /// Run a shell script on a node (bounded).
    pub fn sh(&self, node: &str, script: &str) -> Out {
        self.sh_timeout(node, script, Duration::from_secs(300))
    }

    pub fn sh_timeout(&self, node: &str, script: &str, limit: Duration) -> Out {
        let started = Instant::now();
        let out = Command::new("timeout")
            .arg("--kill-after=5")
            .arg(limit.as_secs().to_string())
            .arg("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            // One connection per node for the whole test run: a new ssh
            // handshake costs the TCG guest about half a second.
            .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=20"])
            .arg("-o")
            .arg(format!("ControlPath={}/cm-%n", self.run_dir.display()))
            .arg(node)
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("ssh to a lab node");
        if std::env::var_os("LAB_TRACE").is_some() {
            let first: String = script.chars().take(70).collect();
            eprintln!(
                "[lab] {node} {:>5.2}s {}",
                started.elapsed().as_secs_f64(),
                first.replace('\n', " ")
            );
        }
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, node: &str, script: &str) -> String {
        let o = self.sh(node, script);
        assert_eq!(o.code, Some(0), "on {node}: {script}\n{}", o.all());
        o.stdout
    }

    /// `f` on every node at once, in [`Lab::nodes`] order (each node is
    /// its own machine: no need to wait).
    pub fn on_each<T: Send>(&self, f: impl Fn(&str) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self.nodes.iter().map(|n| s.spawn(|| f(n))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("lab thread"))
                .collect()
        })
    }

    /// Destroy and recreate both pools on every node, stop any leftover run,
    /// reset the tool's config and state.
    pub fn fresh_pools(&self) {
        self.on_each(|n| {
            let mut s = String::from(
                "ip link set eth1 up; pkill -KILL -x zfs-nfs-replica; pkill -CONT -x zfs; pkill -KILL -x zfs; sleep 0.2; ",
            );
            // Pools first: a quarantine may be mounted below the state dir.
            for p in POOLS {
                s += &format!("zpool destroy -f {p} 2>/dev/null; rm -rf /pools/{p}*.img /{p}; ");
            }
            // sanoid's snapshot cache (15 minutes) would describe the pools
            // an earlier scenario left: a prune then sees nothing to do.
            s += "rm -rf /run/zfs-nfs-replica /var/cache/sanoid; mkdir -p /var/lib/zfs-nfs-replica /etc/sanoid; \
                  find /var/lib/zfs-nfs-replica /etc/sanoid -mindepth 1 -delete; \
                  pidof sshd >/dev/null || /usr/sbin/sshd -E /var/log/sshd.log; ";
            for p in POOLS {
                // On its disk (tests/lab/guest/init wrote which), else on a
                // file in the node's RAM.
                s += &format!(
                    "d=$(awk '$1 == \"{p}\" {{ print $2 }}' /etc/lab/disks 2>/dev/null); \
                     if [ -z \"$d\" ]; then d=/pools/{p}.img; truncate -s 512M $d; fi; \
                     zpool create -f -o cachefile=none -o ashift=12 {p} $d || exit 1; "
                );
            }
            self.ok(n, &s);
        });
    }

    /// Keep the nodes' present state under `name`, to be brought back by
    /// [`Lab::restore`]: both pools (exported, their disks copied on the
    /// host, imported again), which filesystems were mounted, and every file
    /// the tool or the scenario set up (its config and state, sanoid.conf,
    /// `.vmlist`). A restored state is this one byte for byte: scenarios
    /// that start from the same set-up (pools replicated once) make it once
    /// per lab.
    pub fn save(&self, name: &str) {
        let pools = POOLS.join(" ");
        self.on_each(|n| {
            self.ok(
                n,
                &format!(
                    "set -e; d=/pools/saved-{name}; rm -rf $d; mkdir -p $d
                     zpool sync {pools}
                     zfs list -H -o name,mounted -t filesystem -r {pools} | awk '$2 == \"yes\" {{ print $1 }}' > $d/mounted
                     tar -C / -cf $d/files.tar {PERSISTED}
                     zpool export {pools}"
                ),
            );
            self.copy_disks(n, |disk, saved| (disk, saved), name);
            self.ok(n, &Self::import_as_saved(name));
        });
    }

    /// Bring back the state [`Lab::save`] kept under `name`; false (and
    /// nothing done) when this lab has none (or a node was booted again
    /// since). Any run left over is stopped first, as by
    /// [`Lab::fresh_pools`].
    pub fn restore(&self, name: &str) -> bool {
        let pools = POOLS.join(" ");
        // A node booted again since (a crash of the life scenario) lost its
        // copy (`/pools` is in its RAM): then neither node restores, and the
        // caller sets up again (which makes a new copy on both).
        let kept = self.on_each(|n| {
            self.sh(n, &format!("[ -f /pools/saved-{name}/files.tar ]"))
                .code
                == Some(0)
        });
        if !kept.iter().all(|k| *k) {
            if kept.iter().any(|k| *k) {
                eprintln!(
                    "[lab] {name} kept on one node only (the other was booted again): set up anew"
                );
            }
            return false;
        }
        let ok = self.on_each(|n| {
            let o = self.sh(
                n,
                &format!(
                    "d=/pools/saved-{name}; [ -f $d/files.tar ] || exit 9
                     ip link set eth1 up; pkill -KILL -x zfs-nfs-replica; pkill -CONT -x zfs; pkill -KILL -x zfs; sleep 0.2
                     for p in {pools}; do zpool export -f $p 2>/dev/null || zpool destroy -f $p 2>/dev/null; rm -rf /$p; done
                     set -e
                     rm -rf /run/zfs-nfs-replica /var/cache/sanoid
                     for f in {PERSISTED}; do mkdir -p /$f; find /$f -mindepth 1 -delete; done
                     tar -C / -xf $d/files.tar
                     pidof sshd >/dev/null || /usr/sbin/sshd -E /var/log/sshd.log"
                ),
            );
            match o.code {
                Some(0) => {}
                Some(9) => return false,
                _ => panic!("restoring {name} on {n} failed: {}", o.all()),
            }
            self.copy_disks(n, |disk, saved| (saved, disk), name);
            self.ok(n, &Self::import_as_saved(name));
            true
        });
        assert!(
            ok.iter().all(|b| *b) || ok.iter().all(|b| !*b),
            "{name} saved on one node only"
        );
        ok[0]
    }

    /// Copy each pool's disk of node `n` (exported) on the host, between
    /// the live disk and its copy under `name`: `dir` orders (disk, saved)
    /// into (from, to).
    fn copy_disks(&self, n: &str, dir: fn(PathBuf, PathBuf) -> (PathBuf, PathBuf), name: &str) {
        let saved_dir = self.run_dir.join(format!("saved-{name}"));
        std::fs::create_dir_all(&saved_dir).expect("saved dir");
        for p in POOLS {
            let file = format!("{n}-{p}.img");
            let (from, to) = dir(
                self.run_dir.join("disks").join(&file),
                saved_dir.join(&file),
            );
            let st = Command::new("cp")
                .arg("--sparse=always")
                .arg(&from)
                .arg(&to)
                .status()
                .expect("cp");
            assert!(st.success(), "cp {} {}: {st}", from.display(), to.display());
        }
    }

    /// Import the pools of a saved state without mounting, then mount what
    /// was mounted when it was saved (parents first, as listed).
    fn import_as_saved(name: &str) -> String {
        let pools = POOLS.join(" ");
        format!(
            "set -e; for p in {pools}; do
                 zpool import -N -o cachefile=none -d $(awk -v p=$p '$1 == p {{ print $2 }}' /etc/lab/disks) $p
             done
             while read -r ds; do zfs mount \"$ds\"; done < /pools/saved-{name}/mounted"
        )
    }

    /// Write the tool's config on a node (as the package would install it),
    /// and a sanoid.conf for both pools; its peers are the lab's other nodes. The master checks ask the node's
    /// API stand-in (its default CA and token paths); checks are spaced
    /// 100ms apart to keep scenarios short.
    pub fn configure(&self, node: &str, extra: &str) {
        let nodes = self
            .nodes
            .iter()
            .map(|n| format!("{n} = \"{}\"", link_ip(n)))
            .collect::<Vec<_>>()
            .join(", ");
        let cfg = format!(
            "[cluster]\nguest = 103\nnode = \"{node}\"\nnodes = {{ {nodes} }}\n\
             [ssh]\nidentity = \"/root/.ssh/replica_ed25519\"\nstrict_host_key_checking = \"accept-new\"\nconnect_timeout = \"3s\"\n\
             server_alive_interval = \"2s\"\nserver_alive_count = 3\n\
             [proxmox]\nurl = \"https://10.0.2.100:8006\"\ntimeout = \"5s\"\n\
             [checks]\ninterval = \"100ms\"\n{extra}\n[[pool]]\nname = \"zpool1\"\n\n[[pool]]\nname = \"zpool2\"\n"
        );
        self.ok(
            node,
            &format!("cat > /etc/zfs-nfs-replica/config.toml <<'EOF'\n{cfg}EOF\nmkdir -p /etc/sanoid && cat > /etc/sanoid/sanoid.conf <<'EOF'\n{SANOID_CONF}EOF"),
        );
    }

    /// `zfs-nfs-replica ARGS` on a node, as the systemd unit runs it
    /// (journald-style output, default config path), within the unit's
    /// limits that hold without systemd ([`unit_limits`]).
    pub fn replica(&self, node: &str, args: &str) -> Out {
        self.sh(
            node,
            &format!(
                "{} env JOURNAL_STREAM=8:1 /usr/bin/zfs-nfs-replica {args}",
                unit_limits()
            ),
        )
    }

    /// Every property of every dataset and snapshot of both pools, to prove
    /// that something changed nothing.
    pub fn zfs_state(&self, node: &str) -> String {
        // Settle pending transaction groups first: space accounting of writes
        // made just before would otherwise change under us.
        self.ok(
            node,
            &format!("zpool sync && zfs list -H -p -t all -o all -r zpool1 zpool2; {ALL_HOLDS}"),
        )
    }

    /// Every dataset and snapshot with what identifies it and what a
    /// change would touch (guid, creation txg, data, readonly, mounts),
    /// and every hold, but not the pool's space accounting.
    pub fn zfs_identity(&self, node: &str) -> String {
        self.ok(
            node,
            &format!("zpool sync && zfs list -H -p -t all -o name,type,guid,createtxg,referenced,readonly,mountpoint,canmount,mounted,userrefs -r zpool1 zpool2; {ALL_HOLDS}"),
        )
    }

    pub fn guid(&self, node: &str, snap: &str) -> String {
        self.ok(node, &format!("zfs get -H -p -o value guid '{snap}'"))
            .trim()
            .to_string()
    }
}

/// Poll `f` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// The limits `systemd/zfs-nfs-replica.service` puts on the tool that the
/// lab can apply without systemd, as a command prefix: its capability
/// bounding set and `NoNewPrivileges` (setpriv), and its `UMask`, read from
/// the unit file itself. Every scenario runs the tool this way, so none of
/// them would pass if the unit took away something a run, a promotion or a
/// resolve needs. (The unit's seccomp options need systemd itself.)
pub fn unit_limits() -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/zfs-nfs-replica.service"),
    )
    .expect("the unit file");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key}= not in the unit"))
            .trim()
            .to_string()
    };
    assert_eq!(value("NoNewPrivileges"), "yes");
    let caps: Vec<String> = value("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!(
        "umask {}; /usr/bin/setpriv --no-new-privs --inh-caps -all --bounding-set -all,{} --",
        value("UMask"),
        caps.join(",")
    )
}
