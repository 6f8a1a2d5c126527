//! `ufd provision --device DEV` and `--loop IMAGE`: the seed's UFD written to a real block
//! device (or a loop device over an image file, which is how CI exercises the same path).
//!
//! Order of events, and why:
//! 1. **Identify and refuse** before anything is built: `ufd_device::safety::preflight` reads
//!    the device from sysfs (vendor, model, serial, size) and refuses mounted devices, the disk
//!    holding `/` (or swap, or anything stacked on it), read-only devices, devices without
//!    medium, devices smaller than the UFD, and non-USB disks unless `--allow-non-usb`
//!    (Rufus's rules). The seed's hardware rules are shown from sysfs (`ufd check-device`).
//! 2. **Confirm**: the user types the device's serial (or kernel name) unless `--yes`.
//! 3. **Build** the image with the pipeline into a temporary file (sparse) sized to the device.
//! 4. **Re-identify** the device right before writing (a different stick plugged into the same
//!    `/dev/sdX` is refused), open it `O_EXCL`, and write only the image's data with sector 0
//!    zeroed first and written last: an interrupted write leaves no partition table, so the
//!    stick cannot be mistaken for a UFD. Progress counts bytes *flushed* (`fdatasync`), not
//!    bytes queued in the page cache.
//! 5. **Read back**: every written extent is compared after dropping the page cache, then `ufd
//!    inspect` reads the device the way firmware and Windows would.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use ufd_device::check::{check_device, CheckOptions};
use ufd_device::loopdev::{self, AttachOptions};
use ufd_device::safety::{self, Identity, PreflightOptions};
use ufd_device::sysfs::Sysfs;
use ufd_device::write::{self, Phase, Progress, WriteError, WriteOptions};
use ufd_provision::ProvisionOptions;

use crate::CliError;

/// Where the image is written.
pub enum Target {
    /// A block device the user named.
    Device(PathBuf),
    /// An image file attached as a loop device (created sparse at the UFD size if absent).
    Loop(PathBuf),
}

/// Settings of a device write.
pub struct DeviceSettings {
    pub yes: bool,
    pub allow_non_usb: bool,
    /// Directory for the temporary image (default: $TMPDIR or /var/tmp).
    pub work_dir: Option<PathBuf>,
    pub json: bool,
    /// `--size` given explicitly (else the device's size).
    pub size: Option<u64>,
}

fn cli(e: impl std::fmt::Display) -> CliError {
    CliError::other(e.to_string())
}

/// Emit one progress event: JSON lines on stderr with `--json` (CI), a rewritten status line
/// on a terminal, nothing otherwise.
fn show_progress(p: &Progress, json: bool, tty: bool) {
    let phase = match p.phase {
        Phase::Writing => "writing",
        Phase::Verifying => "verifying",
    };
    if json {
        eprintln!(
            "{}",
            serde_json::json!({
                "event": "device-progress",
                "phase": phase,
                "done_bytes": p.done,
                "total_bytes": p.total,
                "rate_bytes_per_s": p.rate.round() as u64,
                "eta_s": p.eta.map(|d| d.as_secs()),
            })
        );
    } else if tty {
        let eta = p
            .eta
            .map_or_else(|| "-".to_string(), |d| format!("{} s", d.as_secs()));
        eprint!(
            "\r{phase:<9} {:>8.1} / {:.1} MiB {} ({:.1} MiB/s, ETA {eta})   ",
            p.done as f64 / 1048576.0,
            p.total as f64 / 1048576.0,
            if p.phase == Phase::Writing {
                "flushed"
            } else {
                "compared"
            },
            p.rate / 1048576.0
        );
        if p.done >= p.total {
            eprintln!();
        }
    }
}

/// Ask for the device's serial (or kernel name) on the terminal.
fn confirm(id: &Identity) -> Result<(), CliError> {
    let word = id.serial.clone().unwrap_or_else(|| id.name.clone());
    eprintln!(
        "ufd: ALL DATA on {} will be destroyed:\n  {}",
        id.path.display(),
        id.summary()
    );
    eprint!(
        "Type the device's {} ({word}) to continue: ",
        if id.serial.is_some() {
            "serial number"
        } else {
            "kernel name"
        }
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| cli(format!("reading the confirmation: {e}")))?;
    if line.trim() != word {
        return Err(CliError {
            message: format!(
                "{}: not confirmed (expected {word:?}); nothing was written",
                id.path.display()
            ),
            code: 1,
        });
    }
    Ok(())
}

/// Provision onto a device or a loop device. `build` runs the pipeline into the given
/// temporary image path with the given UFD size and returns its exit code.
pub fn provision_to(
    target: &Target,
    settings: &DeviceSettings,
    opts: &mut ProvisionOptions,
    build: &mut dyn FnMut(&ProvisionOptions) -> Result<u8, CliError>,
) -> Result<u8, CliError> {
    // A loop device over IMAGE: create the backing file (sparse) when it does not exist.
    let _loop_guard;
    let (device, allow_non_usb, is_loop) = match target {
        Target::Device(d) => (d.clone(), settings.allow_non_usb, false),
        Target::Loop(image) => {
            if !image.exists() {
                let size = settings.size.unwrap_or(opts.ufd_size);
                let f = std::fs::File::create_new(image).map_err(|e| CliError::io(image, e))?;
                f.set_len(size).map_err(|e| CliError::io(image, e))?;
            }
            let ld = loopdev::attach(image, AttachOptions::default())
                .map_err(|e| cli(format!("{}: attach as a loop device: {e}", image.display())))?;
            let path = ld.path().to_path_buf();
            if !settings.json {
                eprintln!("ufd: {} attached as {}", image.display(), path.display());
            }
            _loop_guard = ld;
            (path, true, true)
        }
    };
    let sysfs = Sysfs::system();
    let name = sysfs
        .name_for(&device)
        .map_err(|e| cli(format!("{}: {e}", device.display())))?;
    let facts = sysfs
        .block(&name)
        .map_err(|e| cli(format!("{}: {e}", device.display())))?;
    // The UFD spans the device (the seed's "create partition primary"), unless --size asks
    // for less; a larger --size is refused by the preflight (too small) with the rest.
    let ufd_size = settings.size.unwrap_or(facts.size_bytes);
    let identity = safety::preflight(
        &sysfs,
        &device,
        ufd_size,
        PreflightOptions { allow_non_usb },
    )
    .map_err(|e| cli(format!("{}: {e}", device.display())))?
    .into_result()
    .map_err(|e| cli(format!("{}: {e}", device.display())))?;
    if !settings.json {
        let hw = check_device(
            &sysfs,
            &device,
            CheckOptions {
                strict_capacity: opts.strict,
            },
        )
        .map_err(|e| cli(format!("{}: {e}", device.display())))?;
        eprint!("{}", hw.text());
    }
    if !settings.yes && !is_loop {
        confirm(&identity)?;
    }

    // Build the image beside nothing the user owns: a private temporary directory.
    let work = match &settings.work_dir {
        Some(d) => d.clone(),
        None => std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp")),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".ufd-device-")
        .tempdir_in(&work)
        .map_err(|e| CliError::io(&work, e))?;
    let image = tmp.path().join("ufd.img");
    opts.out = image.clone();
    opts.ufd_size = ufd_size;
    let code = build(opts)?;
    if code != 0 {
        return Ok(code);
    }

    // Write: re-identify, exclusive open, data only, MBR last, flushed progress, verify.
    let cancel = write::cancel_on_sigint().map_err(cli)?;
    safety::reidentify(&identity).map_err(|e| cli(format!("{e}; nothing was written")))?;
    let dev =
        safety::open_exclusive(&device).map_err(|e| cli(format!("{e}; nothing was written")))?;
    let tty = std::io::stderr().is_terminal();
    let summary = write::write_image(
        &image,
        &dev,
        &device.display().to_string(),
        &WriteOptions::default(),
        cancel,
        &mut |p| show_progress(p, settings.json, tty),
    );
    drop(dev);
    let summary = match summary {
        Ok(s) => s,
        Err(e @ WriteError::Interrupted { .. }) => {
            return Err(CliError {
                message: format!("{}: {e}", device.display()),
                code: 130,
            })
        }
        Err(e) => return Err(cli(format!("{e}"))),
    };
    if settings.json {
        eprintln!(
            "{}",
            serde_json::json!({"event": "device-written", "device": device, "summary": summary})
        );
    } else {
        eprintln!(
            "ufd: {}: {} bytes of data written and flushed in {} extents, {} bytes of the device's last MiB zeroed (as diskpart clean does: no stale backup GPT), read back and compared",
            device.display(),
            summary.data_bytes,
            summary.extents,
            summary.cleared_bytes
        );
        if summary.target_bytes > summary.image_bytes {
            eprintln!(
                "ufd: {}: the {}-byte image fills the start of the {}-byte device; the bytes between its end and the device's last MiB keep their old content (no partition covers them)",
                device.display(),
                summary.image_bytes,
                summary.target_bytes
            );
        }
    }
    // The device as firmware and Windows read it.
    let report = ufd_inspect::inspect(&device).map_err(|e| cli(format!("read-back: {e}")))?;
    let code = report.exit_code(opts.strict);
    if !settings.json {
        print!("{}", report.text());
    }
    Ok(code)
}
