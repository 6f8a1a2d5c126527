//! `ufd provision`: the seed's deployment procedure (crate `ufd-provision`) from the command line.
//!
//! Prints one line per step (seed step, seconds, bytes written) and the warnings, or the whole
//! report as JSON with `--json`. Errors are one line; policy errors name the rule ID.
//!
//! `--plan` prints the seed's Windows procedure for the same options instead
//! (`ufd_provision::plan`: diskpart scripts, imagex, bootsect, bcdboot, reg, with the sizes,
//! drive letters and file names the options give; `--json` for JSON) and exits 0 having
//! written nothing: the built-in synthetic image is not built, the WIM is not read, no tool is
//! looked for.

use std::io::Write;
use std::path::PathBuf;

use ufd_provision::{Event, Firmware, ImageFormat, ProvisionOptions, VhdDeviceForm};

use crate::target::{provision_to, DeviceSettings, Target};
use crate::CliError;

/// A size: bytes, or a number with K/M/G/T (binary: KiB..TiB, as qemu-img and truncate read
/// them) or KB/MB/GB/TB (decimal, as flash is sold).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?}: expected a number of bytes, optionally with K/M/G/T or KB/MB/GB/TB")
    })?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("{s:?}: unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn parse_u32_hex(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("{s:?}: expected a 32-bit number (decimal or 0x...)"))
}

fn parse_guid(s: &str) -> Result<ufd_formats::bcd::Guid, String> {
    ufd_formats::bcd::Guid::parse(s).ok_or_else(|| {
        format!("{s:?}: expected a GUID such as {{01234567-89ab-cdef-0123-456789abcdef}}")
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VhdForm {
    /// vhd=[UFD partition]\hyperV.vhd (bcdedit's bytes, verified).
    Partition,
    /// vhd=[locate]\hyperV.vhd (reconstructed).
    Locate,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// Fixed VHD (`create vdisk ... type=fixed`), the seed's container.
    Vhd,
    /// Fixed VHDX (Hyper-V Server 2012; native boot from VHDX needs NT 6.2+).
    Vhdx,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FirmwareArg {
    /// The seed's layout: one active NTFS partition, MBR + NTFS boot code, \bootmgr.
    Bios,
    /// Windows To Go-style: active FAT32 EFI system partition (\EFI\BOOT\BOOTX64.EFI,
    /// \EFI\Microsoft\Boot\BCD) + NTFS partition with \hyperV.vhd.
    Uefi,
    /// The UEFI layout, with the NTFS partition active and BIOS-bootable as well.
    Both,
}

/// Build a UFD image the way the seed's steps 1-7 build a Hyper-V Server UFD.
#[derive(clap::Args)]
pub struct ProvisionArgs {
    /// The Hyper-V Server WIM (install.wim). Without it, the built-in synthetic image named by
    /// `--synthetic` is built (or taken from its cache) and used.
    #[arg(long)]
    pub wim: Option<PathBuf>,
    /// Which built-in synthetic image to use when no --wim is given.
    #[arg(long, default_value = "hyperv-2008r2", value_parser = ["hyperv-2008r2", "ws2008r2", "hyperv-2012"])]
    pub synthetic: String,
    /// Image index in the WIM (1-based).
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// The UFD image file to write (created atomically; sparse on the host).
    #[arg(long, group = "target", required_unless_present_any = ["device", "loop_image"])]
    pub out: Option<PathBuf>,
    /// Write the UFD onto this block device (a real stick): identified from sysfs, refused
    /// when mounted, holding `/`, read-only, too small or not USB; confirmed by typing its
    /// serial number unless --yes; re-identified right before writing; read back afterwards.
    #[arg(long, group = "target", value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// Write the UFD onto a loop device over IMAGE (created sparse at --size if absent), the
    /// same path as --device: what CI uses instead of a physical stick.
    #[arg(long = "loop", group = "target", value_name = "IMAGE")]
    pub loop_image: Option<PathBuf>,
    /// --device: do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// --device: accept a disk that is not on USB (e.g. a SATA or NVMe disk used as the UFD).
    #[arg(long)]
    pub allow_non_usb: bool,
    /// --device/--loop: directory for the temporary image built before the write (default:
    /// $TMPDIR, else /var/tmp).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// UFD capacity (e.g. 16GB, 16G, 15518924800). Default: 16GB for --out and a new --loop
    /// image, the device's size for --device.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// The native-boot container: a fixed VHD (the seed's, 2008 R2) or a fixed VHDX (Hyper-V
    /// Server 2012 and later; \hyperV.vhdx).
    #[arg(long, value_enum, default_value = "vhd")]
    pub format: FormatArg,
    /// VHD size (DiskPart's maximum=12288 MiB).
    #[arg(long, default_value = "12288M", value_parser = parse_size)]
    pub vhd_size: u64,
    /// UFD MBR disk signature (default: random).
    #[arg(long, value_parser = parse_u32_hex)]
    pub disk_signature: Option<u32>,
    /// BCD locale.
    #[arg(long, default_value = "en-US")]
    pub locale: String,
    /// OS loader description (default: from the image's BCD-Template).
    #[arg(long)]
    pub description: Option<String>,
    /// How the BCD names the VHD.
    #[arg(long, value_enum, default_value = "partition")]
    pub vhd_device: VhdForm,
    /// Firmware to lay the UFD out for.
    #[arg(long, value_enum, default_value = "bios")]
    pub firmware: FirmwareArg,
    /// Size of the EFI system partition for --firmware uefi|both (whole MiB, 64M..2048M;
    /// Windows To Go uses 350 MB).
    #[arg(long, default_value = "100M", value_parser = parse_size)]
    pub esp_size: u64,
    /// Set Control\PnP\PollBootPartitionTimeout (ms) in the image's SYSTEM hive.
    #[arg(long)]
    pub poll_boot_partition_timeout: Option<u32>,
    /// Recommendation misses are errors; 16 GB is required.
    #[arg(long)]
    pub strict: bool,
    /// Do not enforce the capacity requirement (for small test images; reported in the output).
    #[arg(long)]
    pub no_policy_preflight: bool,
    /// Keep only these UI languages (repeatable, e.g. --keep-language en-US): every other
    /// language folder (\\Windows\\System32\\de-DE, \\Windows\\Boot\\PCAT\\de-DE, ...) is left out of
    /// the applied image and its SYSTEM UILanguages key deleted. The WIM is not modified.
    #[arg(long = "keep-language", value_name = "LL-CC")]
    pub keep_language: Vec<String>,
    /// Loader object GUID in \\Boot\\BCD instead of a random one (reproducible images).
    #[arg(long, hide = true, value_parser = parse_guid)]
    pub loader_guid: Option<ufd_formats::bcd::Guid>,
    /// The VHD's own MBR disk signature instead of a random one (reproducible images).
    #[arg(long, hide = true, value_parser = parse_u32_hex)]
    pub vhd_disk_signature: Option<u32>,
    /// Replace an existing --out.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON (with --plan: the plan as JSON).
    #[arg(long)]
    pub json: bool,
    /// Print the equivalent Windows procedure of the seed for these options (diskpart scripts,
    /// imagex, bootsect, bcdboot, reg, with the real sizes, letters and file names) and exit:
    /// nothing is written, no tool is run, the WIM is not read.
    #[arg(long)]
    pub plan: bool,
    /// --plan: the UFD's disk number for `select disk` (default: the seed's placeholder).
    #[arg(long, requires = "plan", value_name = "N")]
    pub ufd_disk_number: Option<u32>,
    /// --plan: drive letter of the VHD's partition.
    #[arg(long, requires = "plan", default_value_t = 'r')]
    pub vhd_letter: char,
    /// --plan: drive letter of the UFD's NTFS partition.
    #[arg(long, requires = "plan", default_value_t = 'z')]
    pub ufd_letter: char,
    /// --plan: drive letter of the EFI system partition (--firmware uefi|both).
    #[arg(long, requires = "plan", default_value_t = 's')]
    pub esp_letter: char,
    /// --plan: the technician computer's folder for the VHD.
    #[arg(
        long,
        requires = "plan",
        default_value = "c:\\hvvhd",
        value_name = "WINDOWS-PATH"
    )]
    pub vhd_dir: String,
    /// --plan: the WIM's path on the technician computer.
    #[arg(
        long,
        requires = "plan",
        default_value = "d:\\sources\\install.wim",
        value_name = "WINDOWS-PATH"
    )]
    pub windows_wim: String,
}

fn usage_or_other(e: ufd_provision::ProvisionError) -> CliError {
    CliError {
        message: e.to_string(),
        code: if matches!(e, ufd_provision::ProvisionError::Usage(_)) {
            2
        } else {
            1
        },
    }
}

/// `--plan`: the seed's Windows procedure for these options; writes nothing (the synthetic
/// image is not built, the WIM is not read, no tool is looked for).
fn print_plan(args: &ProvisionArgs, opts: &ProvisionOptions) -> Result<u8, CliError> {
    let params = ufd_provision::plan::PlanParams {
        ufd_disk_number: args.ufd_disk_number,
        vhd_letter: args.vhd_letter,
        ufd_letter: args.ufd_letter,
        esp_letter: args.esp_letter,
        vhd_dir: args.vhd_dir.clone(),
        wim_path: args.windows_wim.clone(),
        ..ufd_provision::plan::PlanParams::default()
    };
    let plan = ufd_provision::plan::windows_plan(opts, &params).map_err(usage_or_other)?;
    let text = if args.json {
        let mut t = serde_json::to_string_pretty(&plan)
            .map_err(|e| CliError::other(format!("plan: {e}")))?;
        t.push('\n');
        t
    } else {
        plan.to_string()
    };
    // A reader that stops early (`| head`) is not an error; anything else is.
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::other(format!("standard output: {e}")))
        }
        _ => Ok(0),
    }
}

/// The WIM to apply: `--wim`, or the built-in synthetic image (built or taken from its cache;
/// `--plan` only names it).
fn resolve_wim(args: &ProvisionArgs) -> Result<PathBuf, CliError> {
    Ok(match &args.wim {
        Some(w) => w.clone(),
        None if args.plan => PathBuf::from(format!("<built-in synthetic {}>", args.synthetic)),
        None => {
            let w = ufd_synthetic::find_or_build(&args.synthetic).map_err(|e| {
                CliError::other(format!("built-in synthetic image {}: {e}", args.synthetic))
            })?;
            if !args.json {
                println!(
                    "image: built-in synthetic {} ({})",
                    args.synthetic,
                    w.display()
                );
            }
            w
        }
    })
}

pub fn run(args: ProvisionArgs) -> Result<u8, CliError> {
    let target = match (&args.out, &args.device, &args.loop_image) {
        (Some(_), _, _) => None,
        (None, Some(d), _) => Some(Target::Device(d.clone())),
        (None, None, Some(l)) => Some(Target::Loop(l.clone())),
        (None, None, None) => return Err(CliError::usage("one of --out, --device, --loop")),
    };
    let out = args.out.clone().unwrap_or_default();
    // A device is identified and refused before anything is built: its WIM is resolved only
    // when the image is built (inside `provision_to`).
    let wim = match target {
        Some(_) if !args.plan => PathBuf::new(),
        _ => resolve_wim(&args)?,
    };
    let mut opts = ProvisionOptions::seed(&wim, &out);
    opts.index = args.index;
    opts.ufd_size = args.size.unwrap_or(DEFAULT_UFD_SIZE);
    opts.vhd_size = args.vhd_size;
    opts.format = match args.format {
        FormatArg::Vhd => ImageFormat::Vhd,
        FormatArg::Vhdx => ImageFormat::Vhdx,
    };
    opts.disk_signature = args.disk_signature;
    opts.locale = args.locale.clone();
    opts.description = args.description.clone();
    opts.vhd_device_form = match args.vhd_device {
        VhdForm::Partition => VhdDeviceForm::Partition,
        VhdForm::Locate => VhdDeviceForm::Locate,
    };
    opts.poll_boot_partition_timeout = args.poll_boot_partition_timeout;
    opts.firmware = match args.firmware {
        FirmwareArg::Bios => Firmware::Bios,
        FirmwareArg::Uefi => Firmware::Uefi,
        FirmwareArg::Both => Firmware::Both,
    };
    opts.esp_size = args.esp_size;
    opts.strict = args.strict;
    opts.policy_preflight = !args.no_policy_preflight;
    opts.overwrite = args.force;
    opts.keep_languages = args.keep_language.clone();
    opts.loader_guid = args.loader_guid;
    opts.vhd_disk_signature = args.vhd_disk_signature;
    if args.plan {
        return print_plan(&args, &opts);
    }
    let json = args.json;
    match target {
        None => run_pipeline(&opts, json),
        Some(t) => {
            let settings = DeviceSettings {
                yes: args.yes,
                allow_non_usb: args.allow_non_usb,
                work_dir: args.work_dir.clone(),
                json,
                size: args.size,
            };
            provision_to(&t, &settings, &mut opts, &mut |o| {
                let mut o = o.clone();
                o.wim = resolve_wim(&args)?;
                run_pipeline(&o, json)
            })
        }
    }
}

/// The UFD size for image files when `--size` is not given: the seed's recommended 16 GB.
pub const DEFAULT_UFD_SIZE: u64 = 16_000_000_000;

/// Run the pipeline into `opts.out` and print its report.
fn run_pipeline(opts: &ProvisionOptions, json: bool) -> Result<u8, CliError> {
    let mut progress = |e: Event| match e {
        Event::Started(_) => {}
        Event::Finished(s) if !json => println!(
            "{:<24} {:>8.3} s {:>14} B  {}",
            format!("{:?}", s.step),
            s.seconds,
            s.bytes_written,
            s.detail
        ),
        Event::Finished(_) => {}
        Event::Warning(w) => eprintln!("ufd: warning: {w}"),
    };
    ufd_provision::stale::remove_scratch_on_signal(&opts.out)
        .map_err(|e| CliError::other(format!("cannot install the signal handlers: {e}")))?;
    let report = ufd_provision::provision(opts, &mut progress).map_err(usage_or_other)?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::other(format!("report: {e}")))?;
        println!("{text}");
    } else {
        println!(
            "total {:.3} s, {} bytes written; {} ({} bytes allocated on the host)",
            report.total_seconds,
            report.total_bytes_written,
            report.out.display(),
            report.out_allocated_bytes
        );
        if !report.preflight.enforced {
            println!("policy preflight NOT enforced (--no-policy-preflight)");
        }
        if let Some(l) = &report.languages {
            println!(
                "languages: kept {}, removed {} ({} folders, {} files, {} bytes saved)",
                l.plan.kept.join(" "),
                if l.plan.removed.is_empty() {
                    "none".to_string()
                } else {
                    l.plan.removed.join(" ")
                },
                l.plan.folders.len(),
                l.plan.files,
                l.plan.bytes_saved
            );
        }
        for n in &report.not_done {
            println!("not done: {n}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16GB"), Ok(16_000_000_000));
        assert_eq!(parse_size("12288M"), Ok(12288 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_u32_hex("0x12345678"), Ok(0x1234_5678));
        assert!(parse_u32_hex("0x1_0000_0000").is_err());
    }
}
