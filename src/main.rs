use std::process::ExitCode;

use clap::Parser;
use zfs_nfs_replica::cli::{Cli, Command};
use zfs_nfs_replica::{commands, config, exit, logging, role};

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
    let cfg = match config::parse(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config error: {e}");
            return ExitCode::from(exit::CONFIG);
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
                Command::Run(args) => commands::run::run(&cfg, args, &role::AssumeMaster).await,
                Command::Check => commands::check::check(&cfg).await,
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
    ExitCode::from(code)
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
