//! `ufd run SCENARIO|DIR`: boot provisioned UFD images in QEMU and check each scenario's
//! expectations (crate `ufd-harness`). Without `--image`, each scenario's image recipe is
//! provisioned here: the built-in synthetic image with the guest probe as its
//! `\Windows\Boot\EFI\bootmgfw.efi` (so bcdboot copies it to the UFD's ESP and OVMF starts it),
//! the UEFI layout, and the recipe's deviations (no PollBootPartitionTimeout, paging left on,
//! a damaged BCD). Images are cached by recipe, so a matrix provisions each recipe once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ufd_harness::error::Error as HarnessError;
use ufd_harness::scenario::{
    junit_xml, results_json, results_table, run_path, ImageRecipe, RunOptions,
};
use ufd_provision::{Firmware, ProvisionOptions};

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
    /// Firmware to test (e.g. a new OVMF build); default: Debian's OVMF / SeaBIOS.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Where provisioned images are cached.
    #[arg(long, default_value = "target/ufd-run/images")]
    pub image_cache: PathBuf,
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
    let text = format!("{r:?}|{wim_key}|{}", env!("CARGO_PKG_VERSION"));
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
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

/// Provision a scenario's image recipe (UEFI layout, the probe as the boot manager).
fn provision_recipe(r: &ImageRecipe, probe: &Path, cache: &Path) -> Result<PathBuf, HarnessError> {
    let overrides = [ufd_synthetic::Override {
        image_path: "Windows\\Boot\\EFI\\bootmgfw.efi".into(),
        source: probe.to_path_buf(),
    }];
    let built = ufd_synthetic::build(&r.synthetic, &cache.join("wim"), &overrides)
        .map_err(|e| herr(&format!("synthetic image {}", r.synthetic), e))?;
    let wim = built.wim;
    let out = cache.join(format!("{}.img", recipe_key(r, &built.key)));
    if out.exists() {
        return Ok(out);
    }
    let mut opts = ProvisionOptions::seed(&wim, &out);
    opts.firmware = Firmware::Uefi;
    if let Some(size) = r.ufd_size {
        opts.ufd_size = size;
    }
    opts.poll_boot_partition_timeout = r.poll_boot_partition_timeout;
    opts.disable_paging = !r.leave_paging_enabled;
    ufd_provision::provision(&opts, &mut |_| {}).map_err(|e| herr("provision", e))?;
    if r.corrupt_bcd {
        let esp = ufd_provision::UfdLayout::of(&opts)
            .esp_offset()
            .ok_or_else(|| herr("corrupt BCD", "the UEFI layout has no ESP"))?;
        if let Err(e) = corrupt_bcd(&out, esp) {
            let _ = std::fs::remove_file(&out);
            return Err(e);
        }
    }
    Ok(out)
}

pub fn run(args: RunArgs) -> Result<u8, CliError> {
    let probe = args.probe.clone();
    let cache = args.image_cache.clone();
    std::fs::create_dir_all(&cache).map_err(|e| CliError::io(&cache, e))?;
    // Scenarios run on parallel threads; a recipe is provisioned once, under this lock.
    let built: Mutex<HashMap<String, PathBuf>> = Mutex::new(HashMap::new());
    let provider = move |r: &ImageRecipe| -> Result<PathBuf, HarnessError> {
        let probe = probe.as_deref().ok_or_else(|| {
            HarnessError::config("provisioning scenario images needs the guest probe: --probe FILE or UFD_PROBE_EFI (cargo xtask e2e builds it)")
        })?;
        let mut done = built.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("{r:?}");
        if let Some(p) = done.get(&key) {
            return Ok(p.clone());
        }
        let p = provision_recipe(r, probe, &cache)?;
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
        probe_disk: None,
        accel: None,
        artifacts: Some(args.artifacts.clone()),
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    };
    let results = run_path(&args.scenarios, &opts)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.scenarios.display())))?;
    if args.json {
        println!("{}", results_json(&results));
    } else {
        print!("{}", results_table(&results));
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
