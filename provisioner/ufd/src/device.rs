//! `ufd check-device DEVICE`: the seed's hardware rules for the target UFD, judged from sysfs
//! (crate `ufd-device`) with the same rule IDs, levels and verdict shape as `ufd inspect`
//! and the guest probes.

use std::path::PathBuf;

use ufd_device::check::{check_device, CheckOptions};
use ufd_device::sysfs::Sysfs;

use crate::CliError;

/// Judge a block device against the seed's hardware rules (removable bit, USB 2.0, class 08h,
/// capacity, hub depth, dedicated controller), from sysfs. Reads only; never opens the device
/// for writing.
#[derive(clap::Args)]
pub struct CheckDeviceArgs {
    /// The device (`/dev/sdb`, `/dev/loop0`), or its kernel name (`sdb`).
    pub device: PathBuf,
    /// Read sysfs under this directory instead of `/` (recorded or synthetic trees).
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
    /// 16 GB is a requirement, not a recommendation (as `ufd provision --strict`).
    #[arg(long)]
    pub strict: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit code: 0 when no requirement fails, 3 when one does (as `ufd inspect`).
pub fn check(args: CheckDeviceArgs) -> Result<u8, CliError> {
    let sysfs = args
        .sysfs_root
        .as_ref()
        .map_or_else(Sysfs::system, |r| Sysfs::new(r.clone()));
    let report = check_device(
        &sysfs,
        &args.device,
        CheckOptions {
            strict_capacity: args.strict,
        },
    )
    .map_err(|e| CliError::other(format!("{}: {e}", args.device.display())))?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::other(format!("JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", report.text());
    }
    Ok(report.exit_code)
}
