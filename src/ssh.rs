//! The connection to a peer: one OpenSSH master connection per peer and run
//! (`ControlMaster`), and every remote operation a short-lived mux client on
//! it.
//!
//! We launch the master ourselves through the [`Runner`] (so connecting has a
//! deadline and a process group like every other child), ask it whether it
//! is up with `ssh -O check` and close it with `ssh -O exit`, both bounded
//! (a master that does not exit is killed). Remote commands are plain
//! [`Cmd`]s (`ssh -S <socket> ... -- '<quoted command>'`) run by the same
//! runner: a `zfs send` child writes straight into the mux client's stdin,
//! so stream bytes never pass through this process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::Cmd;
use crate::config::Ssh as SshConfig;
use crate::runner::{Runner, stderr_head};

/// ssh exits with 255 when ssh itself failed (connection, auth, mux), as
/// opposed to the remote command's own exit status.
pub const SSH_FAILURE: i32 = 255;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh to {peer} ({addr}): cannot connect: {reason}")]
    Connect {
        peer: String,
        addr: String,
        reason: String,
    },
    #[error("ssh to {peer}: {reason}")]
    Session { peer: String, reason: String },
}

/// How to reach one peer.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub addr: String,
}

/// A live master connection.
pub struct Peer {
    pub name: String,
    pub addr: String,
    ctl: PathBuf,
    dir: PathBuf,
    /// This process opened the master and closes it (false: a handle on a
    /// master opened elsewhere, or one already closed).
    owned: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("ctl", &self.ctl)
            .finish()
    }
}

/// The master's command line: everything that bounds a hung peer is here
/// (`ConnectTimeout`, `ServerAliveInterval`/`CountMax`, `BatchMode`).
pub fn master_cmd(cfg: &SshConfig, target: &Target, ctl: &Path, log: &Path) -> Cmd {
    let secs = |d: Duration| d.as_secs().max(1).to_string();
    let mut c = Cmd::new("ssh").args([
        "-M",
        "-f",
        "-N",
        "-T",
        "-S",
        &ctl.display().to_string(),
        "-E",
        &log.display().to_string(),
        "-o",
        // The master outlives an idle minute only: if this process dies, the
        // master does not linger for long.
        "ControlPersist=60",
        "-o",
        "BatchMode=yes",
        "-o",
        &format!("ConnectTimeout={}", secs(cfg.connect_timeout.get())),
        "-o",
        &format!(
            "ServerAliveInterval={}",
            secs(cfg.server_alive_interval.get())
        ),
        "-o",
        &format!("ServerAliveCountMax={}", cfg.server_alive_count),
        "-o",
        &format!(
            "StrictHostKeyChecking={}",
            cfg.strict_host_key_checking.as_ssh()
        ),
        "-o",
        "LogLevel=ERROR",
        "-p",
        &cfg.port.to_string(),
        "-l",
        &cfg.user,
    ]);
    if let Some(kh) = &cfg.known_hosts {
        c = c
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()));
    }
    if let Some(id) = &cfg.identity {
        c = c
            .args(["-o", "IdentitiesOnly=yes", "-i"])
            .arg(id.display().to_string());
    }
    c.arg("--").arg(target.addr.clone())
}

impl Peer {
    /// Open the master connection. `run_dir` holds the control socket.
    pub async fn connect<R: Runner>(
        runner: &R,
        cfg: &SshConfig,
        target: &Target,
        run_dir: &Path,
    ) -> Result<Peer, SshError> {
        let err = |reason: String| SshError::Connect {
            peer: target.name.clone(),
            addr: target.addr.clone(),
            reason,
        };
        std::fs::create_dir_all(run_dir)
            .map_err(|e| err(format!("cannot create {}: {e}", run_dir.display())))?;
        let dir = run_dir.join(format!("ssh-{}-{}", target.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        restrict(&dir);
        let ctl = dir.join("master");
        let log = dir.join("log");
        let cmd = master_cmd(cfg, target, &ctl, &log);
        // ConnectTimeout bounds the TCP connect and the banner; authentication
        // is bounded by this deadline.
        let deadline = cfg.connect_timeout.get() * 3 + Duration::from_secs(5);
        let started = std::time::Instant::now();
        let res = runner.output(&cmd, deadline).await;
        tracing::debug!(
            "ssh master to {} ({}) in {:.2}s",
            target.name,
            target.addr,
            started.elapsed().as_secs_f64()
        );
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let cleanup = |dir: &Path| {
            let _ = std::fs::remove_dir_all(dir);
        };
        match res {
            Ok(out) if out.success() => {}
            Ok(out) => {
                cleanup(&dir);
                let text = if log_text.trim().is_empty() {
                    out.stderr
                } else {
                    log_text
                };
                return Err(err(stderr_head(&text)));
            }
            Err(e) => {
                cleanup(&dir);
                return Err(err(e.to_string()));
            }
        }
        Ok(Peer {
            name: target.name.clone(),
            addr: target.addr.clone(),
            ctl,
            dir,
            owned: true,
        })
    }

    /// A handle on a master connection opened elsewhere (another process, or a
    /// test): commands go through `ctl`, and nothing is closed on drop.
    pub fn detached(name: &str, ctl: PathBuf) -> Peer {
        Peer {
            name: name.to_string(),
            addr: String::new(),
            dir: ctl.parent().map(Path::to_path_buf).unwrap_or_default(),
            ctl,
            owned: false,
        }
    }

    /// A local command that runs `inner` on the peer through the master
    /// connection. Every word of `inner` is quoted for the peer's shell.
    pub fn remote(&self, inner: &Cmd) -> Cmd {
        self.remote_line(inner.to_shell())
    }

    /// Ask the peer for `op`: a `zfs-nfs-replica serve` request, which the
    /// peer runs through its restricted key (or its shell).
    pub fn request(&self, op: &crate::zfs::Op) -> Cmd {
        self.remote_line(crate::serve::line(op))
    }

    fn remote_line(&self, line: String) -> Cmd {
        Cmd::new("ssh")
            .args(["-S", &self.ctl.display().to_string()])
            // Never open a second connection: if the master is gone, fail
            // (port 9 and host `none` cannot connect).
            .args([
                "-o",
                "ControlMaster=no",
                "-o",
                "BatchMode=yes",
                "-T",
                "-p",
                "9",
                "none",
                "--",
            ])
            .arg(line)
    }

    /// Is the master still up?
    pub async fn check(&self, timeout: Duration) -> Result<(), SshError> {
        if !self.owned {
            return Err(self.session_err("closed".into()));
        }
        match control(&self.ctl, "check", timeout).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.session_err(e)),
        }
    }

    fn session_err(&self, reason: String) -> SshError {
        SshError::Session {
            peer: self.name.clone(),
            reason,
        }
    }

    /// Close the master, bounded; a master that does not exit is killed.
    pub async fn close(mut self, timeout: Duration) {
        // A detached handle owns neither the master nor its directory.
        if !std::mem::take(&mut self.owned) {
            return;
        }
        if control(&self.ctl, "exit", timeout).await.is_err() {
            kill_master(&self.ctl);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn control_socket(&self) -> &Path {
        &self.ctl
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if std::mem::take(&mut self.owned) {
            // Not closed explicitly (an error path): ask the master to exit
            // without waiting on it for long.
            kill_master(&self.ctl);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `ssh -S CTL -O OP` (`check`, `exit`) within `timeout`, in its own
/// process group and killed at the deadline; what it said, or why not.
async fn control(ctl: &Path, op: &str, timeout: Duration) -> Result<String, String> {
    let child = tokio::process::Command::new("ssh")
        .arg("-S")
        .arg(ctl)
        .args(["-O", op, "none"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("ssh -O {op}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(o)) if o.status.success() => Ok(String::from_utf8_lossy(&o.stderr).into_owned()),
        Ok(Ok(o)) => Err(format!(
            "ssh -O {op}: {}",
            stderr_head(&String::from_utf8_lossy(&o.stderr))
        )),
        Ok(Err(e)) => Err(format!("ssh -O {op}: {e}")),
        Err(_) => Err(format!(
            "master did not answer `ssh -O {op}` within {}s",
            timeout.as_secs()
        )),
    }
}

/// `ssh -O check` prints `Master running (pid=N)`; SIGTERM that pid.
fn kill_master(ctl: &Path) {
    let out = std::process::Command::new("timeout")
        .args(["5", "ssh", "-S"])
        .arg(ctl)
        .args(["-O", "check", "none"])
        .stdin(std::process::Stdio::null())
        .output();
    let Ok(out) = out else { return };
    let text = String::from_utf8_lossy(&out.stderr);
    if let Some(pid) = text
        .split("pid=")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ssh;

    #[test]
    fn master_command_bounds_every_wait() {
        let cfg = Ssh {
            identity: Some("/root/.ssh/id key".into()),
            ..Default::default()
        };
        let c = master_cmd(
            &cfg,
            &Target {
                name: "pve2".into(),
                addr: "10.0.0.12".into(),
            },
            Path::new("/run/x/master"),
            Path::new("/run/x/log"),
        );
        let s = c.to_string();
        for want in [
            "BatchMode=yes",
            "ConnectTimeout=10",
            "ServerAliveInterval=10",
            "ServerAliveCountMax=3",
            "StrictHostKeyChecking=yes",
            "-i '/root/.ssh/id key'",
            "-- 10.0.0.12",
        ] {
            assert!(s.contains(want), "{want} missing from {s}");
        }
    }
}
