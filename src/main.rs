use std::process::ExitCode;

use clap::Parser;
use zfs_nfs_replica::cli::{Cli, Command};
use zfs_nfs_replica::{commands, config, exit, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::CONFIG
            } else {
                exit::OK
            });
        }
    };
    logging::init(cli.verbose, cli.quiet);
    tracing::debug!("zfs-nfs-replica {} starting", env!("CARGO_PKG_VERSION"));
    // Needs no configuration: it runs where the package is built.
    if let Command::GenerateAssets { dir } = &cli.command {
        return match commands::assets::generate(dir) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(exit::INTERNAL)
            }
        };
    }
    // The hookscript must never fail the guest's start: whatever happens, 0.
    let is_hook = matches!(cli.command, Command::Hook(_));
    let cfg = match config::parse(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config error: {e}");
            return ExitCode::from(if is_hook { exit::OK } else { exit::CONFIG });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let code = rt.block_on(async {
        let work = async {
            match &cli.command {
                Command::Run(args) => commands::run::run(&cfg, args).await,
                Command::Check => commands::check::check(&cfg).await,
                Command::History(args) => commands::history::history(&cfg, args).await,
                Command::Diverged => commands::diverged::diverged(&cfg).await,
                Command::Status(args) => commands::status::status(&cfg, args),
                Command::Resolve(args) => commands::resolve::resolve(&cfg, args).await,
                Command::Adopt(args) => commands::adopt::adopt(&cfg, args).await,
                Command::GenerateAssets { .. } => exit::INTERNAL,
                Command::Hook(args) => {
                    commands::hook::hook(&cfg, args).await;
                    exit::OK
                }
            }
        };
        tokio::select! {
            code = work => code,
            sig = interrupted() => {
                // Dropping `work` kills every child (kill_on_drop) and closes
                // the ssh masters; receives stay resumable.
                tracing::error!("interrupted by {sig}: stopping; interrupted receives resume on the next run");
                exit::TRANSIENT
            }
        }
    });
    tracing::debug!("peak RSS {} KiB", peak_rss_kib());
    ExitCode::from(if is_hook { exit::OK } else { code })
}

/// This process's peak resident set size (its children are not counted).
fn peak_rss_kib() -> i64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is valid and writable for the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
