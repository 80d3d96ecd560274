use std::process::ExitCode;

use clap::Parser;
use zfs_nfs_replica::cli::{Cli, Command};
use zfs_nfs_replica::exit::{self, Exit};
use zfs_nfs_replica::{commands, config, interrupt, logging};

/// `status --check` is a monitoring plugin: whatever goes wrong before it
/// can judge anything (a bad flag, a missing or broken config), it prints
/// one `UNKNOWN` line and exits 3, the monitoring convention.
fn is_status_check(args: &[std::ffi::OsString]) -> bool {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    words.contains(&"status") && words.contains(&"--check")
}

fn unknown(why: &str) -> Exit {
    let first = why.lines().find(|l| !l.trim().is_empty()).unwrap_or(why);
    let first = first.trim().trim_start_matches("error: ");
    zfs_nfs_replica::outln!("ZFS-NFS-REPLICA UNKNOWN - {}", first.replace('|', "/"));
    Exit::Monitoring(exit::UNKNOWN)
}

fn main() -> ExitCode {
    // The one place an ending becomes the process's exit code.
    ExitCode::from(run().code())
}

fn run() -> Exit {
    // First, before any thread exists: SIGTERM/SIGINT end the process within
    // a bounded time whatever it is doing (the grace follows the config).
    let interrupt = interrupt::install(std::time::Duration::from_secs(15));
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let nagios = is_status_check(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) if nagios && e.use_stderr() => return unknown(&e.to_string()),
        Err(e) => {
            let _ = e.print();
            // `--help` and `--version` end well; a bad flag is a usage error.
            return if e.use_stderr() {
                Exit::Config
            } else {
                Exit::Ok
            };
        }
    };
    logging::init(cli.verbose, cli.quiet);
    tracing::debug!("zfs-nfs-replica {} starting", env!("CARGO_PKG_VERSION"));
    // Needs no configuration: it runs where the package is built.
    if let Command::GenerateAssets { dir } = &cli.command {
        return match commands::assets::generate(dir) {
            Ok(()) => Exit::Ok,
            Err(e) => {
                tracing::error!("{e}");
                Exit::Internal
            }
        };
    }
    // The hookscript must never fail the guest's start: whatever happens, 0.
    let is_hook = matches!(cli.command, Command::Hook(_));
    let cfg = match config::parse(&cli.config) {
        Ok(c) => c,
        Err(e) if nagios => return unknown(&format!("config error: {e}")),
        Err(e) => {
            tracing::error!("config error: {e}");
            return if is_hook { Exit::Ok } else { Exit::Config };
        }
    };
    // Stopping kills the children at once; their own grace, and a margin,
    // is all a stop may take.
    interrupt.set_grace(cfg.timeouts.kill_grace.get() + std::time::Duration::from_secs(5));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return Exit::Internal;
        }
    };
    let ending = rt.block_on(async {
        let work = async {
            match &cli.command {
                Command::Run(args) => commands::run::run(&cfg, args).await,
                Command::Check => commands::check::check(&cfg).await,
                Command::History(args) => commands::history::history(&cfg, args).await,
                Command::Diverged => commands::diverged::diverged(&cfg).await,
                Command::Status(args) => commands::status::status(&cfg, args),
                Command::Resolve(args) => commands::resolve::resolve(&cfg, args).await,
                Command::Adopt(args) => commands::adopt::adopt(&cfg, args).await,
                Command::GenerateAssets { .. } => Exit::Internal,
                Command::Role(args) => commands::role::role(&cfg, args).await,
                Command::Handover(args) => commands::handover::handover(&cfg, args).await,
                Command::Standby => commands::standby::standby(&cfg).await,
                Command::Serve(args) => commands::serve::serve(&cfg, args).await,
                Command::AuthorizedKey(args) => commands::authorized_key::print(&cfg, args),
                Command::Hook(args) => {
                    commands::hook::hook(&cfg, args).await;
                    Exit::Ok
                }
            }
        };
        tokio::select! {
            ending = work => ending,
            sig = interrupt.wait() => {
                // Dropping `work` kills every child (kill_on_drop) and closes
                // the ssh masters; receives stay resumable.
                tracing::error!("interrupted by {sig}: stopping; interrupted receives resume on the next run");
                Exit::Transient
            }
        }
    });
    tracing::debug!("peak RSS {} KiB", peak_rss_kib());
    if is_hook { Exit::Ok } else { ending }
}

/// This process's peak resident set size in KiB (its children are not
/// counted): `VmHWM` of /proc/self/status; 0 when it cannot be read.
fn peak_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
