//! Test fixtures shared by the integration tests: the real-ZFS lab, a real OpenSSH server on
//! loopback with generated keys, and a TCP proxy that can freeze a connection.
#![allow(dead_code)]

pub mod bench;
pub mod http;
pub mod lab;
pub mod life;
pub mod pve;
pub mod sanoid_shapes;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zfs_nfs_replica::config::{Dur, HostKeyChecking, Ssh};

pub const SSHD: &str = "/usr/sbin/sshd";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A current-thread tokio runtime for a test's async parts.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A real sshd on 127.0.0.1 that accepts one generated client key.
pub struct TestSshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Child,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
}

impl TestSshd {
    pub fn start() -> TestSshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the README test command installs openssh-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let client_key = d.join("client_ed25519");
        for k in [&host_key, &client_key] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(k));
        }
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let host_pub = std::fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        let known_hosts = d.join("known_hosts");
        let key = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {key}\n[localhost]:{port} {key}\n"),
        )
        .unwrap();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\n\
                 PidFile {}\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nMaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n",
                host_key.display(),
                d.join("authorized_keys").display(),
                d.join("sshd.pid").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(d.join("sshd.log")).unwrap(),
            ))
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TestSshd {
            dir,
            port,
            child,
            client_key,
            known_hosts,
        }
    }

    /// Our `[ssh]` config for this server, on `port` (the server's or a proxy's).
    pub fn ssh_config(&self, port: u16) -> Ssh {
        let known_hosts = self.dir.path().join(format!("known_hosts_{port}"));
        let text = std::fs::read_to_string(&self.known_hosts)
            .unwrap()
            .replace(&format!("]:{} ", self.port), &format!("]:{port} "));
        std::fs::write(&known_hosts, text).unwrap();
        Ssh {
            user: current_user(),
            identity: Some(self.client_key.clone()),
            port,
            connect_timeout: Dur::secs(3),
            server_alive_interval: Dur::secs(1),
            server_alive_count: 2,
            known_hosts: Some(known_hosts),
            strict_host_key_checking: HostKeyChecking::Yes,
        }
    }

    pub fn stop(&mut self) {
        // The listener and every per-connection sshd (they share our session's
        // process tree; kill by parent pid).
        let pid = self.child.id();
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &pid.to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP proxy that can stop forwarding (both ways) while keeping
/// the sockets open: a peer that "stops answering".
pub struct FreezeProxy {
    pub port: u16,
    pub frozen: Arc<AtomicBool>,
}

impl FreezeProxy {
    pub fn start(to_port: u16) -> FreezeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(a) = conn else { return };
                let Ok(b) = std::net::TcpStream::connect(("127.0.0.1", to_port)) else {
                    return;
                };
                for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)]
                {
                    let f = f.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16384];
                        loop {
                            while f.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    while f.load(Ordering::SeqCst) {
                                        std::thread::sleep(Duration::from_millis(50));
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        FreezeProxy { port, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// PIDs of live processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // Zombies have an empty cmdline and are not running anything.
            text.contains(needle)
        })
        .collect()
}

/// A small seeded generator (xorshift64*): the same seed, the same
/// sequence (fuzzing, the life test).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
