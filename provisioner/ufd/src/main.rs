//! `ufd` — provision Hyper-V Server USB flash drive images on Linux and inspect them.
//!
//! This binary is the edge of the system: it reads and writes files and calls
//! `ufd-formats` for every byte it interprets. Errors end the process with one line
//! (`ufd: FILE: what is wrong at which byte`) and a non-zero exit; usage errors exit 2.

mod bcdcmd;
mod cache;
mod device;
mod fsutil;
mod hivecmd;
mod inspect;
mod provision;
mod run;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ufd",
    version,
    about = "Provision Hyper-V Server USB flash drive images on Linux and inspect them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Registry hive files: export, read and edit in place.
    #[command(subcommand)]
    Hive(hivecmd::HiveCmd),
    /// BCD stores.
    #[command(subcommand)]
    Bcd(bcdcmd::BcdCmd),
    /// Build a UFD image the way the seed's steps 1-7 build a Hyper-V Server UFD.
    Provision(provision::ProvisionArgs),
    /// Boot provisioned UFD images in QEMU and check each scenario's expectations.
    Run(run::RunArgs),
    /// Show what a disk image, VHD, hive, BCD store or a directory of them holds, with policy verdicts.
    Inspect {
        /// A UFD disk image, a .vhd, a hive, a BCD store, or a directory of such artefacts
        /// (ufd.img, hyperV.vhd, BCD, SYSTEM) judged together.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Judge a block device (the target UFD) against the seed's hardware rules, from sysfs.
    CheckDevice(device::CheckDeviceArgs),
}

/// An error for the user: one line, and the exit code to end with.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 2,
        }
    }
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        CliError {
            message: format!("{}: {e}", path.display()),
            code: 1,
        }
    }
    /// A format error in a given file (the error itself names the offset and the field).
    pub fn format(path: &Path, e: ufd_formats::Error) -> Self {
        CliError {
            message: format!("{}: {e}", path.display()),
            code: 1,
        }
    }
    pub fn other(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hive(cmd) => hivecmd::run(cmd),
        Command::Bcd(cmd) => bcdcmd::run(cmd),
        Command::Provision(args) => provision::run(args),
        Command::Run(args) => run::run(args),
        Command::Inspect { path, json } => inspect::run(&path, json),
        Command::CheckDevice(args) => device::check(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ufd: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
