//! `segflow`: the one binary. anyhow lives only here, at the edge; every library crate has its
//! own typed errors, and each failure maps to a documented exit code.

mod args;
mod audit;
mod backfill;
mod commands;
mod demo;

use std::process::ExitCode;

use clap::Parser;
use segflow_engine::exit;

use crate::args::{Command, RawArgs};

/// How a command ended: the exit code, with messages already printed.
pub(crate) struct Exit(pub i32);

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,datafusion=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEGFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

fn main() -> ExitCode {
    let raw = match RawArgs::try_parse() {
        Ok(raw) => raw,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    init_logging(raw.verbose);
    let command = match Command::from_raw(raw.command) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME as u8);
        }
    };
    let arguments: Vec<String> = std::env::args().collect();
    let Exit(code) = runtime.block_on(commands::dispatch(command, arguments));
    ExitCode::from(code as u8)
}
