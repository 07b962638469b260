//! `spicebox`: boot a disk image on KVM.

mod acpi;
mod agent;
mod audio;
mod builder;
mod cli;
mod control;
mod devices;
mod display;
mod error;
mod input;
mod input_devices;
mod ioeventfd;
mod irq_routing;
mod linux_boot;
mod machine;
mod memory;
mod msi;
mod qmp;
mod serial_io;
mod spice_link;
mod spice_port;
mod usb_redir;
mod vcpu;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; SPICEBOX_LOG=debug (or any tracing filter) turns them up.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SPICEBOX_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => builder::run(*args),
        Command::SaslUser(args) => spice_link::print_sasl_user(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spicebox: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the message
/// already carries (thiserror messages often embed their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg.replace('\n', " ")
}
