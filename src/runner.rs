//! The one place that spawns processes. Every child gets its own process
//! group and a deadline; on timeout the whole group gets SIGTERM (and SIGCONT,
//! so a stopped process can act on it), then SIGKILL after a grace period. A
//! child that still does not exit (uninterruptible sleep in `zfs recv`, say) is
//! reported with its PID instead of being waited for forever.
//!
//! [`Runner`] is a trait so the engine can be driven by a fake in tests; the
//! real implementation is [`SystemRunner`].

use rustix::process::{Pid, Signal};
use std::future::Future;
use std::io::pipe;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cmdline::Cmd;

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// How many stderr lines an error message carries.
const STDERR_LINES: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` timed out after {}s and was killed{}", after.as_secs(), stuck_note(*stuck_pid))]
    Timeout {
        cmd: String,
        after: Duration,
        stuck_pid: Option<u32>,
    },
    #[error("`{cmd}` made no progress for {}s (stalled stream) and was killed{}", idle.as_secs(), stuck_note(*stuck_pid))]
    Stalled {
        cmd: String,
        idle: Duration,
        stuck_pid: Option<u32>,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("i/o error while running `{cmd}`: {source}")]
    Io {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
}

fn stuck_note(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("; process {p} did not exit after SIGKILL (uninterruptible sleep?)"),
        None => String::new(),
    }
}

impl RunError {
    /// The stderr text of a failed command, for classifying known ZFS errors.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            RunError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, RunError::Timeout { .. } | RunError::Stalled { .. })
    }
}

/// The first few non-empty lines of a command's stderr, joined for a one-line error.
pub fn stderr_head(stderr: &str) -> String {
    // `zfs send -t` first dumps the token it resumes (`resume token
    // contents:`, then `nvlist version: 0` and `key = value` lines); the
    // error comes after it. The dump says nothing the token did not.
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !is_token_dump(l))
        .take(STDERR_LINES)
        .collect();
    if lines.is_empty() {
        "no error output".to_string()
    } else {
        lines.join(" | ")
    }
}

fn is_token_dump(l: &str) -> bool {
    let key = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    l == "resume token contents:"
        || l.starts_with("nvlist version:")
        || l.split_once(" = ").is_some_and(|(k, _)| key(k))
        // a boolean pair prints its name alone
        || key(l)
}

/// A `send | recv` pipeline: the bytes go from one child's stdout straight into
/// the other's stdin through an OS pipe, never through this process.
pub struct PipeSpec<'a> {
    pub send: &'a Cmd,
    pub recv: &'a Cmd,
    /// No progress reported on the sender's stderr for this long is a stall.
    pub stall: Duration,
    /// Upper bound for the whole transfer.
    pub limit: Duration,
    /// How long the receiver may take to finish after the sender is done.
    pub finish: Duration,
}

#[derive(Debug, Clone)]
pub struct PipeOutput {
    pub send_stderr: String,
    pub recv_stderr: String,
    pub elapsed: Duration,
}

/// Runs commands. Implementations must enforce the deadline they are given.
pub trait Runner: Sync {
    /// Run to completion, capturing stdout and stderr. A non-zero exit is not an
    /// error here: callers classify it (`zfs` errors carry meaning).
    fn output(
        &self,
        cmd: &Cmd,
        timeout: Duration,
    ) -> impl Future<Output = Result<Output, RunError>>;

    /// [`Runner::output`], stdout handed to `on_line` one line at a time
    /// (without its newline) as it arrives instead of kept: for listings too
    /// big to hold as text. The returned `stdout` is empty. The default
    /// reads the whole output first (fakes).
    fn output_lines(
        &self,
        cmd: &Cmd,
        timeout: Duration,
        on_line: &mut dyn FnMut(&str),
    ) -> impl Future<Output = Result<Output, RunError>> {
        async move {
            let mut o = self.output(cmd, timeout).await?;
            o.stdout.lines().for_each(&mut *on_line);
            o.stdout = String::new();
            Ok(o)
        }
    }

    /// Run `send | recv`. `on_send_line` sees every stderr line of the sender and
    /// returns true when the line shows progress (it resets the stall clock).
    /// A failure of either side is an error; the receiver's message wins, since
    /// it is the one that explains why a stream was refused.
    fn pipe(
        &self,
        spec: PipeSpec<'_>,
        on_send_line: &mut dyn FnMut(&str) -> bool,
    ) -> impl Future<Output = Result<PipeOutput, RunError>>;
}

/// Spawns real processes.
#[derive(Debug, Clone)]
pub struct SystemRunner {
    /// Between SIGTERM and SIGKILL, and again between SIGKILL and giving up.
    pub kill_grace: Duration,
}

impl Default for SystemRunner {
    fn default() -> Self {
        SystemRunner {
            kill_grace: Duration::from_secs(10),
        }
    }
}

fn command(cmd: &Cmd) -> Command {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args)
        // Own process group: a timeout kills the command and everything it
        // started, and a Ctrl-C on the terminal is ours to handle, not theirs.
        .process_group(0)
        .kill_on_drop(true);
    c
}

fn spawn(cmd: &Cmd, c: &mut Command) -> Result<Child, RunError> {
    c.spawn().map_err(|source| RunError::Spawn {
        cmd: cmd.to_string(),
        source,
    })
}

/// Every process group started by this process and not yet seen to end.
/// A forced exit (`crate::interrupt`) kills them all; a group whose run is
/// abandoned (its future dropped: the run was stopped) is killed at once.
/// Process-wide by nature, like the signal disposition it serves.
static LIVE: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// SIGKILL to every live group (SIGKILL stops a stopped process too).
pub fn kill_live_groups() {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    for pgid in live.iter() {
        signal_group(*pgid, Signal::KILL);
    }
}

/// A started process group, registered in [`LIVE`] until its leader has
/// been waited for. Dropped before that (the run was abandoned), it kills
/// the whole group: the leader is not reaped yet, so the id cannot belong
/// to anybody else.
struct Group {
    pgid: Option<u32>,
    reaped: bool,
}

impl Group {
    fn new(pgid: Option<u32>) -> Group {
        if let Some(g) = pgid {
            LIVE.lock().unwrap_or_else(|p| p.into_inner()).push(g);
        }
        Group {
            pgid,
            reaped: false,
        }
    }

    /// Its leader was waited for (the group may still have members, which
    /// the caller handles).
    fn reaped(&mut self) {
        self.reaped = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(g) = self.pgid else { return };
        if !self.reaped {
            signal_group(g, Signal::KILL);
        }
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| *x != g);
    }
}

/// Signal a whole process group; a group already gone (ESRCH) is fine.
fn signal_group(pgid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

impl SystemRunner {
    /// TERM (+CONT), grace, KILL, grace. Returns the PID if it still did not exit.
    async fn terminate(&self, child: &mut Child, pgid: Option<u32>) -> Option<u32> {
        let pgid = pgid?;
        signal_group(pgid, Signal::TERM);
        signal_group(pgid, Signal::CONT);
        if tokio::time::timeout(self.kill_grace, child.wait())
            .await
            .is_ok()
        {
            // The leader is gone; make sure nothing it started lingers.
            signal_group(pgid, Signal::KILL);
            return None;
        }
        signal_group(pgid, Signal::KILL);
        match tokio::time::timeout(self.kill_grace, child.wait()).await {
            Ok(_) => None,
            Err(_) => Some(pgid),
        }
    }

    /// Run to completion; every chunk of stdout goes to `on_stdout` as it
    /// arrives (the returned [`Output`] has an empty `stdout`).
    async fn run_reading(
        &self,
        cmd: &Cmd,
        timeout: Duration,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, RunError> {
        let mut c = command(cmd);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(cmd, &mut c)?;
        let pgid = child.id();
        let mut group = Group::new(pgid);
        let mut so = child.stdout.take().expect("piped stdout");
        let mut se = child.stderr.take().expect("piped stderr");
        let mut err = Vec::new();
        let read_stdout = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match so.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => on_stdout(&buf[..n]),
                    Err(e) => return Err(e),
                }
            }
        };
        let res = tokio::time::timeout(timeout, async {
            let (a, b, st) = tokio::join!(read_stdout, se.read_to_end(&mut err), child.wait());
            a.and(b.map(|_| ())).and(st)
        })
        .await;
        match res {
            Ok(Ok(status)) => {
                group.reaped();
                Ok(Output {
                    status,
                    stdout: String::new(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                })
            }
            Ok(Err(source)) => {
                if self.terminate(&mut child, pgid).await.is_none() {
                    group.reaped();
                }
                Err(RunError::Io {
                    cmd: cmd.to_string(),
                    source,
                })
            }
            Err(_) => {
                let stuck_pid = self.terminate(&mut child, pgid).await;
                if stuck_pid.is_none() {
                    group.reaped();
                }
                Err(RunError::Timeout {
                    cmd: cmd.to_string(),
                    after: timeout,
                    stuck_pid,
                })
            }
        }
    }
}

/// Bytes in, whole lines out (without their newline); what follows the last
/// newline is a line too, at the end.
struct LineSplitter<'a> {
    partial: Vec<u8>,
    on_line: &'a mut dyn FnMut(&str),
}

impl LineSplitter<'_> {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(i) = bytes.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                (self.on_line)(&String::from_utf8_lossy(&bytes[..i]));
            } else {
                self.partial.extend_from_slice(&bytes[..i]);
                (self.on_line)(&String::from_utf8_lossy(&self.partial));
                self.partial.clear();
            }
            bytes = &bytes[i + 1..];
        }
        self.partial.extend_from_slice(bytes);
    }

    fn end(mut self) {
        if !self.partial.is_empty() {
            (self.on_line)(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

impl Runner for SystemRunner {
    async fn output(&self, cmd: &Cmd, timeout: Duration) -> Result<Output, RunError> {
        let mut out = Vec::new();
        let mut o = self
            .run_reading(cmd, timeout, &mut |b| out.extend_from_slice(b))
            .await?;
        // Valid UTF-8 (nearly always) is taken as it is, not copied.
        o.stdout = String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(o)
    }

    async fn output_lines(
        &self,
        cmd: &Cmd,
        timeout: Duration,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<Output, RunError> {
        let mut lines = LineSplitter {
            partial: Vec::new(),
            on_line,
        };
        let o = self
            .run_reading(cmd, timeout, &mut |b| lines.push(b))
            .await?;
        lines.end();
        Ok(o)
    }

    async fn pipe(
        &self,
        spec: PipeSpec<'_>,
        on_send_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<PipeOutput, RunError> {
        let started = Instant::now();
        let (reader, writer) = pipe().map_err(|source| RunError::Io {
            cmd: spec.send.to_string(),
            source,
        })?;

        let mut rc = command(spec.recv);
        rc.stdin(Stdio::from(reader))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut recv = spawn(spec.recv, &mut rc)?;
        // `rc` still owns the read end; drop it so the receiver sees EOF when
        // the sender ends.
        drop(rc);
        let recv_pgid = recv.id();
        let mut recv_group = Group::new(recv_pgid);

        let mut sc = command(spec.send);
        sc.stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped());
        let mut send = match spawn(spec.send, &mut sc) {
            Ok(c) => c,
            Err(e) => {
                drop(sc);
                if self.terminate(&mut recv, recv_pgid).await.is_none() {
                    recv_group.reaped();
                }
                return Err(e);
            }
        };
        drop(sc);
        let send_pgid = send.id();
        let mut send_group = Group::new(send_pgid);

        let mut send_lines = BufReader::new(send.stderr.take().expect("piped")).lines();
        let mut recv_err_pipe = recv.stderr.take().expect("piped");
        let mut send_stderr = String::new();
        let mut recv_stderr = Vec::new();
        let mut send_status: Option<ExitStatus> = None;
        let mut send_lines_done = false;
        let mut last_progress = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut recv_err_done = false;

        // Phase 1: until the sender has exited and its stderr is drained.
        enum Fail {
            Stalled,
            Limit,
            Io(std::io::Error),
        }
        let failure: Option<Fail> = loop {
            if send_status.is_some() && send_lines_done {
                break None;
            }
            tokio::select! {
                line = send_lines.next_line(), if !send_lines_done => match line {
                    Ok(Some(l)) => {
                        if on_send_line(&l) {
                            last_progress = Instant::now();
                        } else if send_stderr.len() < 64 * 1024 {
                            send_stderr.push_str(&l);
                            send_stderr.push('\n');
                        }
                    }
                    _ => send_lines_done = true,
                },
                st = send.wait(), if send_status.is_none() => match st {
                    Ok(st) => send_status = Some(st),
                    Err(e) => break Some(Fail::Io(e)),
                },
                n = read_some(&mut recv_err_pipe, &mut recv_stderr), if !recv_err_done => {
                    if n == 0 { recv_err_done = true; }
                },
                _ = tick.tick() => {
                    if send_status.is_none() && last_progress.elapsed() >= spec.stall {
                        break Some(Fail::Stalled);
                    }
                    if started.elapsed() >= spec.limit {
                        break Some(Fail::Limit);
                    }
                }
            }
        };

        if let Some(fail) = failure {
            let send_stuck = self.terminate(&mut send, send_pgid).await;
            let recv_stuck = self.terminate(&mut recv, recv_pgid).await;
            if send_stuck.is_none() {
                send_group.reaped();
            }
            if recv_stuck.is_none() {
                recv_group.reaped();
            }
            let stuck_pid = send_stuck.or(recv_stuck);
            let cmd = spec.send.to_string();
            return Err(match fail {
                Fail::Stalled => RunError::Stalled {
                    cmd,
                    idle: spec.stall,
                    stuck_pid,
                },
                Fail::Limit => RunError::Timeout {
                    cmd,
                    after: spec.limit,
                    stuck_pid,
                },
                Fail::Io(source) => RunError::Io { cmd, source },
            });
        }

        // Phase 2: the sender is done; the receiver gets `finish` to commit.
        let recv_wait = tokio::time::timeout(spec.finish, async {
            let mut rest = Vec::new();
            let (r, st) = tokio::join!(recv_err_pipe.read_to_end(&mut rest), recv.wait());
            recv_stderr.extend_from_slice(&rest);
            r.and(st)
        })
        .await;
        // The sender's leader was waited for in phase 1.
        send_group.reaped();
        let recv_status = match recv_wait {
            Ok(Ok(st)) => {
                recv_group.reaped();
                st
            }
            Ok(Err(source)) => {
                if self.terminate(&mut recv, recv_pgid).await.is_none() {
                    recv_group.reaped();
                }
                return Err(RunError::Io {
                    cmd: spec.recv.to_string(),
                    source,
                });
            }
            Err(_) => {
                let stuck_pid = self.terminate(&mut recv, recv_pgid).await;
                if stuck_pid.is_none() {
                    recv_group.reaped();
                }
                return Err(RunError::Timeout {
                    cmd: spec.recv.to_string(),
                    after: spec.finish,
                    stuck_pid,
                });
            }
        };
        let send_status = send_status.expect("loop ends with a status");
        // Which side's failure is the cause: a receiver that only saw its
        // stream end early ("failed to read from stream") failed because
        // the sender did (a stale resume token, a snapshot gone): report
        // the sender, whose stderr says why. Otherwise the receiver's error
        // is the cause, and the sender's is its broken pipe.
        let cut_short =
            String::from_utf8_lossy(&recv_stderr).contains("failed to read from stream");
        if !send_status.success() && (recv_status.success() || cut_short) {
            return Err(RunError::Failed {
                cmd: spec.send.to_string(),
                status: send_status.to_string(),
                stderr: stderr_head(&send_stderr),
            });
        }
        let recv_stderr = String::from_utf8_lossy(&recv_stderr).into_owned();
        if !recv_status.success() {
            return Err(RunError::Failed {
                cmd: spec.recv.to_string(),
                status: recv_status.to_string(),
                stderr: stderr_head(&recv_stderr),
            });
        }
        Ok(PipeOutput {
            send_stderr,
            recv_stderr,
            elapsed: started.elapsed(),
        })
    }
}

async fn read_some(r: &mut tokio::process::ChildStderr, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    match r.read(&mut chunk).await {
        Ok(n) => {
            if buf.len() < 64 * 1024 {
                buf.extend_from_slice(&chunk[..n]);
            }
            n
        }
        Err(_) => 0,
    }
}
