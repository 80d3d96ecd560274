//! Logs via `tracing`: human lines with colours on a terminal; under systemd
//! (stderr is the journal stream `JOURNAL_STREAM` names, and journald's
//! socket answers) native journal entries, each event's fields as journal
//! fields (`DATASET=`, `PEER=`, `NODE=`, `BYTES=`, ...) and
//! `SYSLOG_IDENTIFIER=zfs-nfs-replica`; otherwise with `JOURNAL_STREAM` set
//! (journald not reachable, or stderr redirected elsewhere) plain lines with
//! a `<N>` syslog priority prefix and no timestamp.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Is stderr the very stream `JOURNAL_STREAM` (`DEVICE:INODE`) names? Not
/// when the variable was inherited by a process whose stderr goes
/// elsewhere (systemd.exec(5) asks programs to check).
fn stderr_is_the_journal_stream() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// `verbose`: 0 = info, 1 = debug, 2+ = trace. `RUST_LOG` overrides.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(format!(
                "zfs_nfs_replica={default},{}",
                if verbose > 1 { "debug" } else { "warn" }
            ))
        })
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    if under_journald() {
        if stderr_is_the_journal_stream()
            && let Ok(layer) = tracing_journald::layer()
        {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let layer = layer
                .with_field_prefix(None)
                .with_syslog_identifier("zfs-nfs-replica".into());
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .try_init();
            return;
        }
        let _ = builder.with_ansi(false).event_format(Journald).try_init();
    } else {
        // Colours on a terminal, unless NO_COLOR is set (no-color.org).
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let _ = builder
            .with_writer(|| crate::progress_bar::TermWriter)
            .with_ansi(ansi)
            .with_target(false)
            .compact()
            .try_init();
    }
}

struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: format::Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prio = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(w, "<{prio}>")?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(w, "{}", span.name())?;
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.is_empty()
                {
                    write!(w, "{{{f}}}")?;
                }
                w.write_str(": ")?;
            }
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}
