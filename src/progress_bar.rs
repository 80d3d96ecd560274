//! Transfer progress, injected into the engine so it never touches a terminal
//! itself: a live bar on a terminal, nothing extra under systemd (the engine
//! logs one line per dataset with bytes, duration and rate either way).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::units::{clock, human_bytes};

/// A bar is drawn on the last line of stderr right now (a log line must
/// clear it first, or the two would share a line).
static BAR_SHOWN: AtomicBool = AtomicBool::new(false);

/// The log's writer on a terminal: a log line first clears a bar drawn on
/// the same line (the bar is drawn again at its next update, below the
/// log line). Each line is written under stderr's lock, as the bar is, so
/// the two never mix.
pub struct TermWriter;

impl Write for TermWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        clear_then_write(&mut std::io::stderr().lock(), buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn clear_then_write(out: &mut impl Write, buf: &[u8]) -> std::io::Result<()> {
    if BAR_SHOWN.swap(false, Ordering::SeqCst) {
        out.write_all(b"\r\x1b[2K")?;
    }
    out.write_all(buf)
}

pub trait Progress {
    fn start(&mut self, label: &str);
    fn update(&mut self, bytes: u64, estimate: Option<u64>);
    fn finish(&mut self);
}

/// No live display.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str) {}
    fn update(&mut self, _: u64, _: Option<u64>) {}
    fn finish(&mut self) {}
}

/// One redrawn line on stderr.
pub struct Bar {
    label: String,
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Bar {
    pub fn new() -> Self {
        Bar {
            label: String::new(),
            started: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bar {
    fn start(&mut self, label: &str) {
        self.label = label.to_string();
        self.started = Instant::now();
        self.last_draw = None;
        self.drawn = false;
    }

    fn update(&mut self, bytes: u64, estimate: Option<u64>) {
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = render(&self.label, bytes, estimate, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        BAR_SHOWN.store(true, Ordering::SeqCst);
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn && BAR_SHOWN.swap(false, Ordering::SeqCst) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.drawn = false;
    }
}

/// `label  [#####.....]  45%  1.2 GiB / 2.6 GiB  48.0 MiB/s  ETA 0:31`
pub fn render(label: &str, bytes: u64, estimate: Option<u64>, elapsed: Duration) -> String {
    let rate = if elapsed.as_secs_f64() > 0.0 {
        bytes as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    match estimate.filter(|e| *e > 0) {
        Some(est) => {
            let frac = (bytes as f64 / est as f64).min(1.0);
            let width = 20;
            let filled = (frac * width as f64).round() as usize;
            let eta = if rate > 0.0 && est > bytes {
                clock(Duration::from_secs_f64((est - bytes) as f64 / rate))
            } else {
                "-".into()
            };
            format!(
                "{label}  [{}{}] {:>3.0}%  {} / {}  {}/s  ETA {eta}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                frac * 100.0,
                human_bytes(bytes),
                human_bytes(est),
                human_bytes(rate as u64)
            )
        }
        None => format!(
            "{label}  {}  {}/s",
            human_bytes(bytes),
            human_bytes(rate as u64)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_clears_the_bar_first_and_only_once() {
        BAR_SHOWN.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        clear_then_write(&mut out, b"INFO sent\n").unwrap();
        clear_then_write(&mut out, b"INFO next\n").unwrap();
        assert_eq!(out, b"\r\x1b[2KINFO sent\nINFO next\n");
    }

    #[test]
    fn renders_bar_rate_and_eta() {
        let s = render(
            "zpool1/data",
            512 << 20,
            Some(1024 << 20),
            Duration::from_secs(8),
        );
        assert_eq!(
            s,
            "zpool1/data  [##########..........]  50%  512.0 MiB / 1.0 GiB  64.0 MiB/s  ETA 0:08"
        );
        let s = render("x", 1000, None, Duration::from_secs(1));
        assert_eq!(s, "x  1000 B  1000 B/s");
    }
}
