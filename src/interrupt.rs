//! SIGTERM and SIGINT end the process within a bounded time, whatever it is
//! doing.
//!
//! The signals are blocked in every thread and taken by one thread of
//! their own (`sigwait`), so they are seen even while the main thread is
//! inside a system call that does not return. On the first one the async
//! side is told ([`Interrupt::wait`] returns): the run stops, its children
//! are killed, its ssh connections closed, and it exits 3. If the process
//! is still alive `grace` later (or at a second signal), the waiting thread
//! kills every process group the runner started and exits 3 itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Exit code of a stopped run (the exit-code table's "transient").
const EXIT: i32 = 3;

#[derive(Clone)]
pub struct Interrupt {
    notify: Arc<Notify>,
    which: Arc<Mutex<Option<&'static str>>>,
    grace_ms: Arc<AtomicU64>,
}

fn name(sig: i32) -> &'static str {
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Take SIGTERM and SIGINT for this process. Call it first in `main`,
/// before any other thread exists (every thread inherits the blocked mask).
pub fn install(grace: Duration) -> Interrupt {
    let set = signal_set();
    // SAFETY: the set is initialised; blocking signals has no memory effects.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let it = Interrupt {
        notify: Arc::new(Notify::new()),
        which: Arc::new(Mutex::new(None)),
        grace_ms: Arc::new(AtomicU64::new(grace.as_millis() as u64)),
    };
    let t = it.clone();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || t.watch(set));
    if let Err(e) = spawned {
        // Without the thread the signals stay blocked: unblock them, so at
        // least their default action (termination) applies.
        eprintln!("cannot start the signal thread ({e}): signals terminate at once");
        // SAFETY: as above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
    it
}

impl Interrupt {
    /// How long a stop may take before the process ends anyway.
    pub fn set_grace(&self, grace: Duration) {
        self.grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns the signal's name once one arrived.
    pub async fn wait(&self) -> &'static str {
        loop {
            if let Some(n) = *self.which.lock().unwrap_or_else(|p| p.into_inner()) {
                return n;
            }
            self.notify.notified().await;
        }
    }

    fn watch(&self, set: libc::sigset_t) {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the blocked signals in `set`.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        *self.which.lock().unwrap_or_else(|p| p.into_inner()) = Some(name(sig));
        self.notify.notify_waiters();
        self.notify.notify_one();
        let grace = Duration::from_millis(self.grace_ms.load(Ordering::Relaxed));
        let ts = libc::timespec {
            tv_sec: grace.as_secs() as libc::time_t,
            tv_nsec: grace.subsec_nanos() as libc::c_long,
        };
        // SAFETY: waits up to `grace` for a second signal; the info struct
        // may be null.
        let second = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        let why = if second > 0 {
            format!("a second {}", name(second))
        } else {
            format!("still running {}s after {}", grace.as_secs(), name(sig))
        };
        crate::runner::kill_live_groups();
        // One line, as the journal would see it (nothing else may be
        // printed safely from here: other threads may hold locks).
        let msg = format!("<3>zfs-nfs-replica: {why}: killed every child process group, exiting\n");
        // SAFETY: write(2) of our own buffer to fd 2, then _exit.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(EXIT);
        }
    }
}
