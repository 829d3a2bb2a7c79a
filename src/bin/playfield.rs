//! `playfield`: runs the dot game server, or with `playfield bots` the load
//! generator. Everything lives in the library; this only reads settings,
//! binds the port and waits for a signal (or hands over to
//! [`playfield::bots`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use playfield::dots::DotGame;
use playfield::Config;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // The server's own command with its settings at the top level, so that
    // `playfield [OPTIONS]` runs (and documents) the server exactly as it
    // always has; tools are subcommands next to it.
    let mut command = Config::command()
        .subcommand(playfield::bots::Args::command())
        .args_conflicts_with_subcommands(true);
    let matches = command.clone().get_matches();
    match matches.subcommand() {
        // The bots build their own single-threaded runtime and print JSON
        // on stdout, so they get neither the server's runtime nor its logs.
        // `bots` is the only subcommand.
        Some((_, sub)) => match playfield::bots::Args::from_arg_matches(sub) {
            Ok(args) => playfield::bots::main(args),
            Err(e) => e.format(&mut command).exit(),
        },
        None => match Config::from_arg_matches(&matches) {
            Ok(config) => serve(config),
            Err(e) => e.format(&mut command).exit(),
        },
    }
}

fn serve(config: Config) -> ExitCode {
    // Logs go through a background writer that drops lines rather than block:
    // a stdout pipe nobody reads must never stall the game.
    let (log_writer, _log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stdout());
    tracing_subscriber::fmt()
        .with_writer(log_writer)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour only on a terminal, so piped logs stay plain text.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    if let Err(e) = config.validate() {
        eprintln!("playfield: {e}");
        return ExitCode::from(2);
    }
    // Read the certificate and key now, so a bad file is reported before
    // anything listens (the server reads them again when it starts).
    if let Err(e) = playfield::tls::acceptor(&config) {
        eprintln!("playfield: {e}");
        return ExitCode::from(2);
    }
    // One thread (the cores the process may use, e.g. under `taskset`, or
    // `--threads 1`): a single-threaded runtime, which skips the work-stealing
    // machinery a one-core server cannot use.
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let built = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("playfield: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_server(config))
}

async fn run_server(config: Config) -> ExitCode {
    let listener = match TcpListener::bind((config.host, config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "playfield: cannot listen on {}:{}: {e} (pick another with --port or PORT)",
                config.host, config.port
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("playfield: cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scheme = if config.tls() { "https" } else { "http" };
    if addr.ip().is_unspecified() {
        println!(
            "playfield: listening on {scheme}://{addr}/ (all interfaces): open {scheme}://localhost:{}/ in a browser",
            addr.port()
        );
    } else {
        println!("playfield: listening on {scheme}://{addr}/ : open it in a browser");
    }
    // A second Ctrl-C (or SIGTERM) means "now": skip the graceful close.
    tokio::spawn(async {
        shutdown_signal().await;
        shutdown_signal().await;
        eprintln!("playfield: second signal, exiting without waiting for clients");
        std::process::exit(130);
    });
    let first_signal = async {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; closing clients (signal again to exit at once)");
    };
    match playfield::server::run::<DotGame>(config, listener, first_signal).await {
        Ok(()) => {
            // Through the lossy log writer: a full stdout pipe must not hang the exit.
            tracing::info!("playfield: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("playfield: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
