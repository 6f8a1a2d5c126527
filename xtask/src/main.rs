//! `cargo xtask` — the project's build system (uefi-rs / rust-analyzer style).
//!
//! ```text
//! cargo xtask ci               fmt --check, clippy -D warnings, no_std build of ufd-formats for
//!                              x86_64-unknown-uefi, tests with cargo-nextest (+ doc tests), e2e;
//!                              installs what it needs first (apt packages, rustup target, nextest)
//! cargo xtask deps             only install what the project needs
//! cargo xtask demo             the main job on the built-in default (see README)
//! cargo xtask fuzz [SECS]      run every cargo-fuzz target for SECS seconds each (default 60)
//! cargo xtask images           build the synthetic Windows-shaped WIMs into target/vm-images/
//! cargo xtask e2e              build the guest probe and ufd, provision every scenario's image, boot
//!                              them in QEMU (bounded parallelism), JUnit in target/e2e/junit.xml;
//!                              the conformant scenario's probe report must match
//!                              snapshots/e2e__conformant_report.txt (UFD_UPDATE_SNAPSHOTS=1 rewrites)
//! cargo xtask bench [ARGS]     speed goals as ratios against baselines measured in the same run
//!                              (ARGS go to ufd-bench, e.g. --only hive|provision|boot)
//! ```
mod biosprobe;
mod deps;
mod images;
mod snapshot;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

use util::{cargo, run, workspace_root, Step};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("deps") => deps::ensure_all(),
        Some("demo") => demo(),
        Some("fuzz") => fuzz(args.get(1).map(|s| s.parse().unwrap_or(60)).unwrap_or(60)),
        Some("bench") => bench(&args[1..]),
        Some("e2e") => e2e(),
        Some("images") => images::build_all().map(|_| ()),
        _ => {
            eprintln!("usage: cargo xtask <ci|deps|demo|images|e2e|fuzz [SECS]|bench [--only hive|provision|boot]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Bytes a clean `cargo xtask ci` leaves on disk: target/ at its peak (debug + release builds,
/// both guest programs, the e2e scenario images) measured 5.4 GB on a clean clone; rounded up.
const CI_DISK_NEED: u64 = 8 << 30;

/// Say how much space the run has before it starts: a full disk otherwise shows up as an
/// `os error 28` deep inside some compiler step (as it once did, in clippy after 36 s).
fn disk_preflight(root: &std::path::Path) {
    let out = std::process::Command::new("df")
        .args(["-Pk", "--"])
        .arg(root)
        .output();
    let avail_kib = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text.lines().nth(1)?.to_string();
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match avail_kib {
        Some(k) if k * 1024 < CI_DISK_NEED => eprintln!(
            "xtask: warning: {:.1} GiB free under {}; a full run needs about {} GiB (target/ plus the e2e images)",
            (k * 1024) as f64 / (1u64 << 30) as f64,
            root.display(),
            CI_DISK_NEED >> 30
        ),
        Some(k) => eprintln!(
            "xtask: {:.1} GiB free under {} (a full run needs about {} GiB)",
            (k * 1024) as f64 / (1u64 << 30) as f64,
            root.display(),
            CI_DISK_NEED >> 30
        ),
        None => eprintln!("xtask: warning: could not read free disk space (df -Pk)"),
    }
}

/// The fixture folder the tests read (`shared/fixtures` beside the clone).
fn fixtures_present() -> bool {
    std::env::var_os("UFD_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/fixtures"))
        .join("README.md")
        .is_file()
}

/// Nextest filter matching the tests that read `shared/fixtures`.
const FIXTURE_TESTS: &str = "test(/(^|::)fixture_/)";

fn ci() -> Result<(), String> {
    let root = workspace_root();
    disk_preflight(&root);
    deps::ensure_all()?;
    Step::new("fmt").run(cargo(&root).args(["fmt", "--all", "--check"]))?;
    Step::new("clippy").run(cargo(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    Step::new("no_std build of ufd-formats for x86_64-unknown-uefi").run(cargo(&root).args([
        "build",
        "-p",
        "ufd-formats",
        "--no-default-features",
        "--target",
        "x86_64-unknown-uefi",
    ]))?;

    // The guest probes are outside the host workspace (they only build for UEFI / bare
    // metal): check them too.
    let probe = root.join("vm-images/probe/Cargo.toml");
    let bios_probe = root.join("vm-images/bios-probe/Cargo.toml");
    for (what, manifest) in [
        ("UEFI guest probe", &probe),
        ("BIOS stand-in for bootmgr", &bios_probe),
        (
            "fuzz targets",
            &root.join("provisioner/formats/fuzz/Cargo.toml"),
        ),
    ] {
        Step::new(&format!(
            "fmt --check of the {what} (outside the workspace)"
        ))
        .run(cargo(&root).args([
            "fmt",
            "--check",
            "--manifest-path",
            manifest.to_str().unwrap_or_default(),
        ]))?;
    }
    Step::new("clippy of the UEFI guest probe").run(cargo(&root).args([
        "clippy",
        "--manifest-path",
        probe.to_str().unwrap_or_default(),
        "--target",
        "x86_64-unknown-uefi",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;

    Step::new("clippy of the BIOS stand-in for bootmgr").run(cargo(&root).args([
        "clippy",
        "--manifest-path",
        bios_probe.to_str().unwrap_or_default(),
        "--target",
        "x86_64-unknown-none",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;

    // Tests that boot the guest programs take them from the environment instead of each
    // building them from cold.
    let uefi_probe = build_probe(&root)?;
    let bios_stand_in = biosprobe::build_bios_probe(&root)?;
    let mut nextest = cargo(&root);
    nextest
        .env("UFD_PROBE_EFI", &uefi_probe)
        .env("UFD_BIOS_PROBE", &bios_stand_in);
    nextest.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    if !fixtures_present() {
        // Never pass silently: name every test that is skipped, and why.
        let out = run(cargo(&root).args([
            "nextest",
            "list",
            "--workspace",
            "--message-format",
            "oneline",
            "-E",
            FIXTURE_TESTS,
        ]))?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            println!("SKIPPED (shared/fixtures absent beside the clone): {line}");
        }
        nextest.args(["-E", &format!("not {FIXTURE_TESTS}")]);
    }
    Step::new("tests (cargo nextest)").run(&mut nextest)?;
    Step::new("doc tests").run(cargo(&root).args(["test", "--doc", "--workspace"]))?;
    // The scenario matrix in QEMU: the harness, the probe and the provisioner together.
    e2e()?;
    println!("xtask ci: all checks passed");
    Ok(())
}

fn demo() -> Result<(), String> {
    deps::ensure_all()?;
    let root = workspace_root();
    let out = root.join("target/demo");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    Step::new("build ufd").run(cargo(&root).args(["build", "--release", "-p", "ufd"]))?;
    let ufd = release_ufd(&root);
    // The built-in synthetic image carries text stand-ins for the boot managers; the demo puts
    // the guest probes in their place (UFD_SYNTHETIC_OVERRIDES), so the image it provisions is
    // the image it boots.
    let bios_probe = biosprobe::build_bios_probe(&root)?;
    let overrides = out.join("overrides");
    let pcat = overrides.join("Windows/Boot/PCAT");
    std::fs::create_dir_all(&pcat).map_err(|e| format!("{}: {e}", pcat.display()))?;
    std::fs::copy(&bios_probe, pcat.join("bootmgr"))
        .map_err(|e| format!("{}: {e}", pcat.display()))?;
    let image = out.join("ufd.img");
    Step::new(
        "ufd provision (the seed's steps 1-7, BIOS layout, from the built-in synthetic Hyper-V Server image)",
    )
    .run(
        std::process::Command::new(&ufd)
            .env("UFD_SYNTHETIC_OVERRIDES", &overrides)
            .arg("provision")
            .arg("--out")
            .arg(&image)
            .arg("--force"),
    )?;
    Step::new("ufd inspect (the UFD image, read back as firmware and Windows would)")
        .run(std::process::Command::new(&ufd).arg("inspect").arg(&image))?;
    // The boot check of that very image: SeaBIOS boots the stick's MBR, our NTFS boot record
    // loads \bootmgr (the BIOS stand-in), which walks \Boot\BCD to the VHD's SYSTEM hive.
    Step::new(
        "ufd run scenarios/bios-conformant.toml --image (boot check in QEMU: SeaBIOS, EHCI, usb-storage)",
    )
    .run(
        std::process::Command::new(&ufd)
            .current_dir(&root)
            .arg("run")
            .arg("scenarios/bios-conformant.toml")
            .arg("--image")
            .arg(&image)
            .arg("--artifacts")
            .arg(out.join("artifacts")),
    )?;
    Ok(())
}

fn fuzz(secs: u64) -> Result<(), String> {
    let root = workspace_root();
    deps::ensure_cargo_fuzz()?;
    let fuzz_dir = root.join("provisioner/formats/fuzz");
    let targets = run(std::process::Command::new("cargo")
        .current_dir(&fuzz_dir)
        .args(["+nightly", "fuzz", "list"]))?;
    let seeds = fuzz_dir.join("seeds.sh");
    if seeds.is_file() {
        Step::new("seed corpora").run(
            std::process::Command::new("bash")
                .arg(&seeds)
                .current_dir(&fuzz_dir),
        )?;
    }
    for t in targets.lines().map(str::trim).filter(|t| !t.is_empty()) {
        Step::new(&format!("fuzz {t} for {secs} s")).run(
            std::process::Command::new("cargo")
                .current_dir(&fuzz_dir)
                .args([
                    "+nightly",
                    "fuzz",
                    "run",
                    t,
                    "--",
                    &format!("-max_total_time={secs}"),
                ]),
        )?;
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    deps::ensure_all()?;
    let root = workspace_root();
    // The boot section boots the scenario matrix: it needs the probe and the release ufd.
    let probe = build_probe(&root)?;
    Step::new("build ufd").run(cargo(&root).args(["build", "--release", "-p", "ufd"]))?;
    Step::new("bench").run(
        cargo(&root)
            .args(["run", "--release", "-p", "ufd-bench", "--"])
            .args(args)
            .env("UFD_PROBE_EFI", &probe)
            .env("UFD_BIN", release_ufd(&root)),
    )
}

/// The release `ufd` that `cargo build --release -p ufd` produced (honours CARGO_TARGET_DIR).
fn release_ufd(root: &std::path::Path) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("release/ufd")
}

/// Build the UEFI guest probe (outside the host workspace) and return the .efi path.
pub fn build_probe(root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let target_dir = root.join("target/probe");
    Step::new("build the guest probe (x86_64-unknown-uefi)").run(
        cargo(root).args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-uefi",
            "--manifest-path",
            root.join("vm-images/probe/Cargo.toml")
                .to_str()
                .unwrap_or_default(),
            "--target-dir",
            target_dir.to_str().unwrap_or_default(),
        ]),
    )?;
    let efi = target_dir.join("x86_64-unknown-uefi/release/ufd-probe.efi");
    if !efi.is_file() {
        return Err(format!("the probe build did not produce {}", efi.display()));
    }
    Ok(efi)
}

fn e2e() -> Result<(), String> {
    deps::ensure_all()?;
    let root = workspace_root();
    let probe = build_probe(&root)?;
    let bios_probe = biosprobe::build_bios_probe(&root)?;
    Step::new("build ufd").run(cargo(&root).args(["build", "--release", "-p", "ufd"]))?;
    let out = root.join("target/e2e");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    Step::new("ufd run scenarios/ (2 TCG guests at a time)").run(
        std::process::Command::new(release_ufd(&root))
            .current_dir(&root)
            .arg("run")
            .arg("scenarios")
            .arg("--probe")
            .arg(&probe)
            .arg("--bios-probe")
            .arg(&bios_probe)
            .arg("--jobs")
            .arg("2")
            .arg("--image-cache")
            .arg(out.join("images"))
            .arg("--artifacts")
            .arg(out.join("artifacts"))
            .arg("--junit")
            .arg(out.join("junit.xml"))
            .arg("--report-dir")
            .arg(out.join("reports")),
    )?;
    // Both boot paths' full reports: the UEFI probe and the BIOS stand-in on the seed's layout.
    let mut failed = Vec::new();
    for (report, snap) in [
        ("conformant", "e2e__conformant_report.txt"),
        ("bios-conformant", "e2e__bios-conformant_report.txt"),
    ] {
        if let Err(e) = snapshot::check(
            &out.join(format!("reports/{report}.jsonl")),
            &root.join("snapshots").join(snap),
        ) {
            eprintln!("{e}");
            failed.push(snap);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("snapshots differ: {}", failed.join(", ")))
    }
}
