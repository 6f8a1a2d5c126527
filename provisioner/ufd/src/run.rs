//! `ufd run SCENARIO|DIR`: boot provisioned UFD images in QEMU and check each scenario's
//! expectations (crate `ufd-harness`). Without `--image`, each scenario's image recipe is
//! provisioned here: the built-in synthetic image with the guest probe as its
//! `\Windows\Boot\EFI\bootmgfw.efi` (so bcdboot copies it to the UFD's ESP and OVMF starts it),
//! the UEFI layout, and the recipe's deviations (no PollBootPartitionTimeout, paging left on,
//! a damaged BCD). Images are cached by recipe, so a matrix provisions each recipe once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ufd_harness::error::Error as HarnessError;
use ufd_harness::scenario::{
    junit_xml, results_json, results_table, run_path, ContainerFormat, ImageRecipe, Layout,
    RunOptions, ScenarioResult,
};
use ufd_provision::{Firmware, ImageFormat, ProvisionOptions};

use crate::CliError;

/// Run scenarios in QEMU.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A scenario file (`scenarios/*.toml`) or a directory of them.
    pub scenarios: PathBuf,
    /// Boot this image in every scenario instead of provisioning each scenario's recipe.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The guest probe (`ufd-probe.efi`, built for x86_64-unknown-uefi), used as the image's
    /// boot manager when images are provisioned. Default: $UFD_PROBE_EFI.
    #[arg(long, env = "UFD_PROBE_EFI")]
    pub probe: Option<PathBuf>,
    /// The BIOS stand-in for `\bootmgr` (`ufd-bios-probe`, a flat real-mode + long-mode
    /// binary), used when a scenario's layout is `bios`. Default: $UFD_BIOS_PROBE.
    #[arg(long, env = "UFD_BIOS_PROBE")]
    pub bios_probe: Option<PathBuf>,
    /// UEFI firmware to test in OVMF scenarios (e.g. a new OVMF build: a CODE file with its
    /// VARS beside it, or one combined image); default: Debian's OVMF.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Legacy BIOS image to test in SeaBIOS scenarios (`-bios FILE`, e.g. a new SeaBIOS
    /// build); default: QEMU's built-in SeaBIOS.
    #[arg(long, value_name = "FILE")]
    pub bios_firmware: Option<PathBuf>,
    /// Where provisioned images are cached.
    #[arg(long, default_value = "target/ufd-run/images")]
    pub image_cache: PathBuf,
    /// Allocated bytes of cached images kept after the run (least recently used go first;
    /// the images this run used always stay), e.g. 8G.
    #[arg(long, default_value_t = crate::cache::DEFAULT_BUDGET, value_parser = crate::provision::parse_size)]
    pub cache_budget: u64,
    /// Artifacts of failing scenarios (serial log, QMP transcript, screendump, command line).
    #[arg(long, default_value = "target/ufd-run/artifacts")]
    pub artifacts: PathBuf,
    /// Scenarios run at once (each TCG guest takes a core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a JUnit XML report.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write each scenario's normalised probe report to `DIR/<scenario>.jsonl` (one JSON
    /// object per record, the `UFDPROBE ` prefix stripped, timings and host-dependent values
    /// replaced by placeholders; see [`normalized_report`]) — what `cargo xtask e2e` compares
    /// with the committed snapshot.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

/// The UFD's MBR disk signature of every provisioned scenario image (pinned so the images,
/// and the probe's reports that quote it, are the same in every run).
pub const SCENARIO_DISK_SIGNATURE: u32 = 0x5546_4431;
/// The VHD's own disk signature of every provisioned scenario image.
pub const SCENARIO_VHD_DISK_SIGNATURE: u32 = 0x5546_4432;
/// The OS loader object's GUID in the scenario images' `\Boot\BCD` (bcdboot would pick a
/// random one).
pub const SCENARIO_LOADER_GUID: &str = "{6d1f6f3c-7a0e-4b4f-9c52-55464430b001}";
/// The VHD footer's time stamp in scenario images (seconds since 2000-01-01: 2009-10-22).
pub const SCENARIO_VHD_TIMESTAMP: u32 = 309_398_400;
/// The VHD footer's unique id in scenario images.
pub const SCENARIO_VHD_UNIQUE_ID: [u8; 16] = *b"ufd-scenario-vhd";
/// The VHDX identity of `--format vhdx` scenario images (both headers' FileWriteGuid and
/// DataWriteGuid, the Page 83 disk id), the VHDX counterpart of [`SCENARIO_VHD_UNIQUE_ID`];
/// qemu-img would pick random ones.
pub const SCENARIO_VHDX_IDENTITY: ufd_provision::vhdx::VhdxIdentity =
    ufd_provision::vhdx::VhdxIdentity {
        file_write: ufd_formats::vhdx::Guid(*b"ufd-scenario-vfw"),
        data_write: ufd_formats::vhdx::Guid(*b"ufd-scenario-vdw"),
        disk_id: ufd_formats::vhdx::Guid(*b"ufd-scenario-vid"),
    };
/// FILETIME written into the scenario images' hives: 2009-10-22 00:00 UTC (Windows Server
/// 2008 R2 general availability).
pub const SCENARIO_FILETIME: u64 = 129_006_432_000_000_000;

/// Record keys whose values are configuration, not measured time, although they end in `_ms`.
const SETTING_MS_KEYS: &[&str] = &["timeout_ms", "settle_ms"];

/// Placeholder for a record value that varies from run to run or host to host, by key; `None`
/// keeps the value.
fn placeholder(key: &str) -> Option<&'static str> {
    match key {
        // Guest time: TCG speed and host load.
        "ms" | "elapsed" | "seconds" => Some("[ms]"),
        k if k.ends_with("_ms") && k != "tsc_per_ms" && !SETTING_MS_KEYS.contains(&k) => {
            Some("[ms]")
        }
        "tsc_per_ms" | "tsc" => Some("[tsc]"),
        // Depend on the firmware build and QEMU's memory map, not on the image under test.
        "memory_bytes" | "conventional_bytes" => Some("[bytes]"),
        "firmware_revision" => Some("[firmware-revision]"),
        // The BIOS stand-in's memory map and layout: SeaBIOS/QEMU version and the stand-in's
        // own size, not the image under test.
        "e820" => Some("[e820]"),
        "e820_entries" => Some("[n]"),
        "ebda" => Some("[ebda]"),
        "heap" => Some("[heap]"),
        "image_end" => Some("[image-end]"),
        _ => None,
    }
}

/// A value quoted in a record's text that varies per run or per provisioning: the text before
/// it, the value's characters, the text that must follow it, and its placeholder.
///
/// The VHD footer's checksum covers its creation time stamp and unique ID, which the pipeline
/// sets per provisioning (`ProvisionOptions` has no knob to pin them), so the checksum differs
/// between two provisionings of the same recipe; "valid" stays in the text.
struct TextPattern {
    before: &'static str,
    is_value: fn(u8) -> bool,
    after: &'static str,
    placeholder: &'static str,
}

const TEXT_PATTERNS: &[TextPattern] = &[
    TextPattern {
        before: "after ",
        is_value: |b| b.is_ascii_digit(),
        after: " ms",
        placeholder: "[ms]",
    },
    TextPattern {
        before: "checksum 0x",
        is_value: |b| b.is_ascii_hexdigit(),
        after: " ",
        placeholder: "[vhd-footer]",
    },
];

/// Replace the values of [`TEXT_PATTERNS`] in a record's text with their placeholders.
fn normalize_text(s: &str) -> String {
    let mut text = s.to_string();
    for TextPattern {
        before,
        is_value,
        after,
        placeholder,
    } in TEXT_PATTERNS
    {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(i) = rest.find(before) {
            out.push_str(&rest[..i + before.len()]);
            rest = &rest[i + before.len()..];
            let n = rest.bytes().take_while(|b| is_value(*b)).count();
            if n > 0 && rest[n..].starts_with(after) {
                out.push_str(placeholder);
                rest = &rest[n..];
            }
        }
        out.push_str(rest);
        text = out;
    }
    text
}

fn normalize_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match placeholder(k) {
                    Some(p) if !x.is_null() => *x = serde_json::Value::String(p.into()),
                    _ => normalize_value(x),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(normalize_value),
        serde_json::Value::String(s) => *s = normalize_text(s),
        _ => {}
    }
}

/// The probe's records of one run as a stable text: one JSON object per line (keys sorted),
/// measured times (`ms`, `*_ms` except the settings `timeout_ms`/`settle_ms`, `elapsed`,
/// `seconds`, "after N ms" in texts), the VHD footer checksum in texts, the TSC rate, memory
/// sizes and the firmware revision replaced by `[ms]`, `[vhd-footer]`, `[tsc]`, `[bytes]`,
/// `[firmware-revision]`. Disk signatures and the loader GUID stay: [`provision_recipe`] pins
/// them.
pub fn normalized_report(records: &[ufd_harness::probe::Record]) -> String {
    let mut out = String::new();
    for r in records {
        let mut v = r.value.clone();
        normalize_value(&mut v);
        out += &v.to_string();
        out.push('\n');
    }
    out
}

/// Write `dir/<scenario>.jsonl` for every scenario that ran; a scenario that did not run gets
/// its stale report removed, so no old report is mistaken for this run's.
fn write_reports(dir: &Path, results: &[ScenarioResult]) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    for r in results {
        let file = dir.join(format!("{}.jsonl", r.name));
        match &r.run {
            Some(out) => std::fs::write(&file, normalized_report(&out.records))
                .map_err(|e| CliError::io(&file, e))?,
            None => match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CliError::io(&file, e)),
            },
        }
    }
    Ok(())
}

fn herr(what: &str, detail: impl std::fmt::Display) -> HarnessError {
    HarnessError::Process {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

/// FNV-1a over the recipe's fields and the WIM's content key (which covers the probe
/// binary, an override): the cache key of a provisioned image.
fn recipe_key(r: &ImageRecipe, wim_key: &str) -> String {
    // The build id hashes this executable, so it covers the code that provisions and damages
    // the image and every pinned constant (SCENARIO_*) compiled into it.
    let text = format!("{r:?}|{wim_key}|{}", crate::cache::build_id());
    let h = crate::cache::fnv1a(crate::cache::FNV_BASIS, text.as_bytes());
    format!("{}-{h:016x}", r.synthetic)
}

/// Damage the BCD on the ESP the way a bad write would: its base block no longer starts with
/// `regf`, so the boot manager cannot open the store. Done with mtools on the image (no mount).
fn corrupt_bcd(image: &Path, esp_offset: u64) -> Result<(), HarnessError> {
    let target = format!("{}@@{esp_offset}", image.display());
    let tmp = tempfile::NamedTempFile::new().map_err(|e| herr("temp file", e))?;
    let get = Command::new("mcopy")
        .args(["-n", "-o", "-i", &target, "::/EFI/Microsoft/Boot/BCD"])
        .arg(tmp.path())
        .output()
        .map_err(|e| herr("mcopy (install mtools)", e))?;
    if !get.status.success() {
        return Err(herr(
            "mcopy BCD off the ESP",
            String::from_utf8_lossy(&get.stderr),
        ));
    }
    let mut bcd = std::fs::read(tmp.path()).map_err(|e| herr("read BCD", e))?;
    if bcd.len() < 8192 {
        return Err(herr(
            "corrupt BCD",
            format!("BCD is only {} bytes", bcd.len()),
        ));
    }
    bcd[0..4].copy_from_slice(b"XXXX");
    bcd[0x1000..0x1004].copy_from_slice(b"XXXX");
    std::fs::write(tmp.path(), &bcd).map_err(|e| herr("write BCD", e))?;
    let put = Command::new("mcopy")
        .args(["-n", "-o", "-i", &target])
        .arg(tmp.path())
        .arg("::/EFI/Microsoft/Boot/BCD")
        .output()
        .map_err(|e| herr("mcopy (install mtools)", e))?;
    if !put.status.success() {
        return Err(herr(
            "mcopy BCD onto the ESP",
            String::from_utf8_lossy(&put.stderr),
        ));
    }
    Ok(())
}

/// The guest programs that stand in for Windows Boot Manager in provisioned scenario images.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// `ufd-probe.efi`: `\Windows\Boot\EFI\bootmgfw.efi` for UEFI layouts.
    pub uefi: Option<PathBuf>,
    /// The BIOS stand-in (`ufd-bios-probe`): `\Windows\Boot\PCAT\bootmgr` for the seed's
    /// BIOS layout, so bcdboot copies it to the UFD's root where the boot record loads it.
    pub bios: Option<PathBuf>,
}

/// Provision a scenario's image recipe in its layout (UEFI: ESP + NTFS with the UEFI probe as
/// `bootmgfw.efi`; BIOS: the seed's single active NTFS partition with the BIOS stand-in as
/// `\bootmgr`), then apply the recipe's damage.
fn provision_recipe(
    r: &ImageRecipe,
    probes: &Probes,
    cache: &Path,
) -> Result<PathBuf, HarnessError> {
    let layout = r.layout.unwrap_or(Layout::Uefi);
    let need = |probe: &Option<PathBuf>, flag: &str, env: &str| {
        probe.clone().ok_or_else(|| {
            HarnessError::config(format!(
                "provisioning a {layout:?} scenario image needs its guest probe: {flag} FILE or {env} (cargo xtask e2e builds both)"
            ))
        })
    };
    let uefi = || -> Result<ufd_synthetic::Override, HarnessError> {
        Ok(ufd_synthetic::Override {
            image_path: "Windows\\Boot\\EFI\\bootmgfw.efi".into(),
            source: need(&probes.uefi, "--probe", "UFD_PROBE_EFI")?,
        })
    };
    let bios = || -> Result<ufd_synthetic::Override, HarnessError> {
        Ok(ufd_synthetic::Override {
            image_path: "Windows\\Boot\\PCAT\\bootmgr".into(),
            source: need(&probes.bios, "--bios-probe", "UFD_BIOS_PROBE")?,
        })
    };
    let overrides = match layout {
        Layout::Uefi => vec![uefi()?],
        Layout::Bios => vec![bios()?],
        Layout::Both => vec![bios()?, uefi()?],
    };
    let built = ufd_synthetic::build(&r.synthetic, &cache.join("wim"), &overrides)
        .map_err(|e| herr(&format!("synthetic image {}", r.synthetic), e))?;
    let wim = built.wim;
    let out = cache.join(format!("{}.img", recipe_key(r, &built.key)));
    if out.exists() {
        crate::cache::touch(&out);
        return Ok(out);
    }
    // Provisioned and damaged under a temporary name, renamed when complete: an interrupted
    // run never leaves an undamaged or half-built image under a recipe's key.
    let partial = crate::cache::partial_path(&out);
    let mut opts = ProvisionOptions::seed(&wim, &partial);
    opts.firmware = match layout {
        Layout::Uefi => Firmware::Uefi,
        Layout::Bios => Firmware::Bios,
        Layout::Both => Firmware::Both,
    };
    if let Some(size) = r.ufd_size {
        opts.ufd_size = size;
    }
    opts.format = match r.format.unwrap_or(ContainerFormat::Vhd) {
        ContainerFormat::Vhd => ImageFormat::Vhd,
        ContainerFormat::Vhdx => ImageFormat::Vhdx,
    };
    opts.poll_boot_partition_timeout = r.poll_boot_partition_timeout;
    opts.disable_paging = !r.leave_paging_enabled;
    // Pinned footer: the same recipe gives the same bytes (and the same checksum) every run.
    opts.vhd_timestamp = Some(SCENARIO_VHD_TIMESTAMP);
    opts.vhd_unique_id = Some(SCENARIO_VHD_UNIQUE_ID);
    opts.vhdx_identity = Some(SCENARIO_VHDX_IDENTITY);
    opts.disk_signature = Some(SCENARIO_DISK_SIGNATURE);
    opts.vhd_disk_signature = Some(SCENARIO_VHD_DISK_SIGNATURE);
    opts.loader_guid = ufd_formats::bcd::Guid::parse(SCENARIO_LOADER_GUID);
    opts.filetime = Some(SCENARIO_FILETIME);
    ufd_provision::provision(&opts, &mut |_| {}).map_err(|e| herr("provision", e))?;
    if let Err(e) = damage(r, &opts, &partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &out).map_err(|e| herr("rename the provisioned image", e))?;
    Ok(out)
}

/// The UFD disk signature a `wrong_disk_signature` recipe writes (the BCD keeps naming
/// [`SCENARIO_DISK_SIGNATURE`]).
pub const SCENARIO_WRONG_DISK_SIGNATURE: u32 = 0x5546_4439;

/// Apply a recipe's post-provisioning damage to the finished image.
fn damage(r: &ImageRecipe, opts: &ProvisionOptions, image: &Path) -> Result<(), HarnessError> {
    let layout = ufd_provision::UfdLayout::of(opts);
    if r.corrupt_bcd {
        match layout.esp_offset() {
            Some(esp) => corrupt_bcd(image, esp)?,
            None => with_ntfs_mounted(image, layout.ntfs_offset(), |mnt| {
                let bcd = mnt.join("Boot/BCD");
                let mut bytes = std::fs::read(&bcd).map_err(|e| herr("read \\Boot\\BCD", e))?;
                if bytes.len() < 8192 {
                    return Err(herr(
                        "corrupt BCD",
                        format!("BCD is only {} bytes", bytes.len()),
                    ));
                }
                bytes[0..4].copy_from_slice(b"XXXX");
                bytes[0x1000..0x1004].copy_from_slice(b"XXXX");
                std::fs::write(&bcd, &bytes).map_err(|e| herr("write \\Boot\\BCD", e))
            })?,
        }
    }
    if r.vhdx_dirty_log {
        let name = opts.format.file_name();
        with_ntfs_mounted(image, layout.ntfs_offset(), |mnt| {
            dirty_vhdx_log(&mnt.join(name))
        })?;
    }
    if r.move_vhd {
        let name = opts.format.file_name();
        with_ntfs_mounted(image, layout.ntfs_offset(), |mnt| {
            let dir = mnt.join("moved");
            std::fs::create_dir_all(&dir).map_err(|e| herr("mkdir \\moved", e))?;
            std::fs::rename(mnt.join(name), dir.join(name))
                .map_err(|e| herr(&format!("move \\{name} to \\moved\\{name}"), e))
        })?;
    }
    if r.break_mbr_code || r.clear_active_flag || r.wrong_disk_signature {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(image)
            .map_err(|e| herr(&format!("open {}", image.display()), e))?;
        let mut mbr = [0u8; 512];
        f.read_exact_at(&mut mbr, 0)
            .map_err(|e| herr("read the MBR", e))?;
        if r.break_mbr_code {
            mbr[..440].fill(0);
        }
        if r.clear_active_flag {
            for i in 0..4 {
                mbr[0x1BE + 16 * i] = 0;
            }
        }
        if r.wrong_disk_signature {
            mbr[0x1B8..0x1BC].copy_from_slice(&SCENARIO_WRONG_DISK_SIGNATURE.to_le_bytes());
        }
        f.write_all_at(&mbr, 0)
            .map_err(|e| herr("write the MBR", e))?;
        f.sync_all().map_err(|e| herr("fsync the image", e))?;
    }
    Ok(())
}

/// Give the VHDX's current header a non-zero LogGuid (MS-VHDX §2.2.2: the log must be
/// replayed before the file is used) and re-seal its CRC-32C, in place.
fn dirty_vhdx_log(path: &Path) -> Result<(), HarnessError> {
    use std::os::unix::fs::FileExt;
    use ufd_formats::vhdx::{set_log_guid, Guid, Vhdx, HEADER_SIZE};
    use ufd_inspect::io::{FileDev, Stream};
    // The current header is the one every reader chooses (valid, higher sequence number).
    let dev = FileDev::open(path).map_err(|e| herr(&format!("open {}", path.display()), e))?;
    let at = Vhdx::open(&mut Stream::new(std::sync::Arc::new(dev)))
        .map_err(|e| herr(&format!("read {}", path.display()), e))?
        .header_info()
        .current
        .offset;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| herr(&format!("open {}", path.display()), e))?;
    let mut h = [0u8; HEADER_SIZE];
    f.read_exact_at(&mut h, at)
        .map_err(|e| herr("read the VHDX header", e))?;
    set_log_guid(&mut h, &Guid(*b"ufd-dirty-log-01"));
    f.write_all_at(&h, at)
        .map_err(|e| herr("write the VHDX header", e))?;
    f.sync_all().map_err(|e| herr("fsync the VHDX", e))
}

/// Run `f` with the image's NTFS partition at `offset` mounted read-write through a loop
/// device and ntfs-3g (root, /dev/fuse), unmounting and detaching on every path. Only for
/// scenario damage that must go through a real NTFS driver (moving a file); the provisioner
/// itself never mounts.
fn with_ntfs_mounted(
    image: &Path,
    offset: u64,
    f: impl FnOnce(&Path) -> Result<(), HarnessError>,
) -> Result<(), HarnessError> {
    let run = |cmd: &mut Command, what: &str| -> Result<String, HarnessError> {
        let out = cmd
            .output()
            .map_err(|e| herr(what, format!("{e} (needs util-linux and ntfs-3g, as root)")))?;
        if !out.status.success() {
            return Err(herr(what, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let dev = run(
        Command::new("losetup")
            .args(["--find", "--show", "--offset", &offset.to_string()])
            .arg(image),
        "losetup (attach the UFD's NTFS partition)",
    )?;
    let detach = |dev: &str| {
        let _ = Command::new("losetup").args(["-d", dev]).status();
    };
    let mnt = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            detach(&dev);
            return Err(herr("mount point", e));
        }
    };
    if let Err(e) = run(
        Command::new("ntfs-3g").arg(&dev).arg(mnt.path()),
        "ntfs-3g mount",
    ) {
        detach(&dev);
        return Err(e);
    }
    let r = f(mnt.path());
    let um = run(Command::new("umount").arg(mnt.path()), "umount");
    detach(&dev);
    r.and(um.map(|_| ()))
}

pub fn run(args: RunArgs) -> Result<u8, CliError> {
    let probes = Probes {
        uefi: args.probe.clone(),
        bios: args.bios_probe.clone(),
    };
    let cache = args.image_cache.clone();
    std::fs::create_dir_all(&cache).map_err(|e| CliError::io(&cache, e))?;
    // Scenarios run on parallel threads; a recipe is provisioned once, under this lock.
    let built: Mutex<HashMap<String, PathBuf>> = Mutex::new(HashMap::new());
    let provider = |r: &ImageRecipe| -> Result<PathBuf, HarnessError> {
        let mut done = built.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("{r:?}");
        if let Some(p) = done.get(&key) {
            return Ok(p.clone());
        }
        let p = provision_recipe(r, &probes, &cache)?;
        done.insert(key, p.clone());
        Ok(p)
    };
    let opts = RunOptions {
        image: args.image.clone(),
        image_provider: if args.image.is_some() {
            None
        } else {
            Some(&provider)
        },
        firmware: args.firmware.clone(),
        bios_firmware: args.bios_firmware.clone(),
        probe_disk: None,
        accel: None,
        artifacts: Some(args.artifacts.clone()),
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    };
    let results = run_path(&args.scenarios, &opts)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.scenarios.display())))?;
    drop(opts);
    // Keep the cache bounded: images of older builds and recipes go, least recently used first.
    let used: HashSet<PathBuf> = built
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_values()
        .collect();
    match crate::cache::prune(&cache, &used, args.cache_budget) {
        Ok(removed) if !removed.is_empty() => eprintln!(
            "ufd: image cache {}: removed {} least recently used image(s), {:.1} GB allocated (--cache-budget {} bytes)",
            cache.display(),
            removed.len(),
            removed.iter().map(|r| r.allocated).sum::<u64>() as f64 / 1e9,
            args.cache_budget
        ),
        Ok(_) => {}
        Err(e) => eprintln!("ufd: warning: image cache {}: {e}", cache.display()),
    }
    if args.json {
        println!("{}", results_json(&results));
    } else {
        print!("{}", results_table(&results));
    }
    if let Some(d) = &args.report_dir {
        write_reports(d, &results)?;
    }
    if let Some(f) = &args.junit {
        std::fs::write(f, junit_xml("ufd-scenarios", &results)).map_err(|e| CliError::io(f, e))?;
    }
    Ok(if results.iter().all(|r| r.passed) {
        0
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;
    use ufd_harness::probe::Record;

    fn rec(v: serde_json::Value) -> Record {
        Record {
            t_ms: 1234,
            value: v,
        }
    }

    #[test]
    fn pinned_loader_guid_parses() {
        assert!(ufd_formats::bcd::Guid::parse(SCENARIO_LOADER_GUID).is_some());
    }

    #[rstest]
    #[case(json!({"event":"connect","handles":187,"ms":1053}),
           r#"{"event":"connect","handles":187,"ms":"[ms]"}"#)]
    #[case(json!({"event":"hello","tsc_per_ms":2620009,"version":"0.1.0"}),
           r#"{"event":"hello","tsc_per_ms":"[tsc]","version":"0.1.0"}"#)]
    #[case(json!({"event":"platform","memory_bytes":1,"conventional_bytes":2,"firmware_revision":"0x10000","uefi_revision":"2.70"}),
           r#"{"conventional_bytes":"[bytes]","event":"platform","firmware_revision":"[firmware-revision]","memory_bytes":"[bytes]","uefi_revision":"2.70"}"#)]
    #[case(json!({"event":"handoff","timeout_ms":30000,"settle_ms":1500}),
           r#"{"event":"handoff","settle_ms":1500,"timeout_ms":30000}"#)]
    #[case(json!({"event":"kernel","text":"STOP 0x0000007B after 30001 ms; PollBootPartitionTimeout = 30000 ms","after_ms":30001}),
           r#"{"after_ms":"[ms]","event":"kernel","text":"STOP 0x0000007B after [ms] ms; PollBootPartitionTimeout = 30000 ms"}"#)]
    #[case(json!({"event":"done","walk_ms":514,"total_ms":null,"nested":[{"elapsed":3}]}),
           r#"{"event":"done","nested":[{"elapsed":"[ms]"}],"total_ms":null,"walk_ms":"[ms]"}"#)]
    fn normalizes_varying_values(#[case] v: serde_json::Value, #[case] want: &str) {
        assert_eq!(normalized_report(&[rec(v)]), format!("{want}\n"));
    }

    #[rstest]
    #[case("after ", "after ")]
    #[case("after x ms after 5 ms", "after x ms after [ms] ms")]
    #[case("after 12 s", "after 12 s")]
    #[case("", "")]
    #[case(
        "size 1 bytes, checksum 0xffffe641 valid",
        "size 1 bytes, checksum 0x[vhd-footer] valid"
    )]
    #[case("checksum 0x valid", "checksum 0x valid")]
    fn text_values(#[case] text: &str, #[case] want: &str) {
        assert_eq!(normalize_text(text), want);
    }

    #[test]
    fn reports_are_written_and_stale_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("broken.jsonl");
        std::fs::write(&stale, "old\n").unwrap();
        let not_run = ScenarioResult {
            name: "broken".into(),
            passed: false,
            mismatches: Vec::new(),
            error: Some("image: no".into()),
            outcome: None,
            last_hop: None,
            written_bytes: None,
            duration_ms: 0,
            run: None,
        };
        write_reports(dir.path(), &[not_run]).unwrap();
        assert!(!stale.exists());
    }
}
