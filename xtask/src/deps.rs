//! Installs what the project needs on a fresh Debian 12 machine: the README's two commands
//! must work there as root with nothing pre-installed but the Rust toolchain.

use std::process::Command;

use crate::util::Step;

/// (command that must exist, Debian package that provides it, what uses it)
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "hivexregedit",
        "libwin-hivex-perl",
        "hivex oracle: .reg export parity and read-back of written hives",
    ),
    (
        "hivexget",
        "libhivex-bin",
        "hivex oracle: single-value read-back",
    ),
    (
        "qemu-img",
        "qemu-utils",
        "VHD oracle and fixed-VHD creation",
    ),
    ("sfdisk", "fdisk", "MBR oracle"),
    (
        "mkntfs",
        "ntfs-3g",
        "NTFS quick format (DiskPart `format fs=ntfs`), ntfs-3g tools as independent readers",
    ),
    (
        "wimapply",
        "wimtools",
        "ImageX /apply: WIM applied straight onto an unmounted NTFS volume",
    ),
    (
        "as",
        "binutils",
        "assembling the project's own MBR and NTFS boot-record code",
    ),
    (
        "mkfs.fat",
        "dosfstools",
        "FAT32 system partitions (UEFI layout) and the probe's test ESPs",
    ),
    (
        "mcopy",
        "mtools",
        "copying files onto FAT images without mounting",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "ovmf",
        "UEFI firmware for the guest probe (TCG; KVM here cannot run OVMF)",
    ),
    (
        "/usr/lib/x86_64-linux-gnu/libwim.so.15",
        "libwim15",
        "language-pack filtering applies a filtered WIM through libwim (read-only)",
    ),
    (
        "partx",
        "util-linux",
        "loop devices: partitions of an attached image (ufd provision --loop, tests)",
    ),
    (
        "mount",
        "mount",
        "tests that refuse a mounted device; moving the VHD in a scenario image (ntfs-3g)",
    ),
    (
        "kill",
        "procps",
        "tests that stop, interrupt and kill a running ufd (kill -STOP/-INT/-9)",
    ),
    (
        "mkfs.ext4",
        "e2fsprogs",
        "tests: a mounted ext4 partition on a loop device must be refused",
    ),
    (
        "qemu-system-x86_64",
        "qemu-system-x86",
        "booting images under SeaBIOS/OVMF (boot-code proof, harness)",
    ),
];

fn have(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return std::path::Path::new(cmd).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

pub fn ensure_all() -> Result<(), String> {
    ensure_apt()?;
    ensure_rust()?;
    Ok(())
}

fn ensure_apt() -> Result<(), String> {
    let missing: Vec<_> = TOOLS.iter().filter(|(cmd, _, _)| !have(cmd)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let pkgs: Vec<&str> = missing.iter().map(|(_, p, _)| *p).collect();
    for (cmd, pkg, why) in &missing {
        println!("missing `{cmd}` (Debian package {pkg}): {why}");
    }
    if !is_root() {
        return Err(format!(
            "run as root, or install first: sudo apt-get install -y {}",
            pkgs.join(" ")
        ));
    }
    Step::new("apt-get update").run(Command::new("apt-get").args(["update", "-q"]))?;
    Step::new(&format!("apt-get install {}", pkgs.join(" "))).run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&pkgs),
    )?;
    Ok(())
}

fn ensure_rust() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    // The UEFI guest probe, and the BIOS stand-in for bootmgr (bare metal, long mode).
    for target in ["x86_64-unknown-uefi", "x86_64-unknown-none"] {
        if !installed.lines().any(|l| l.trim() == target) {
            Step::new(&format!("rustup target add {target}"))
                .run(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    let comps = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    let comps = String::from_utf8_lossy(&comps.stdout).into_owned();
    for c in ["rustfmt", "clippy"] {
        if !comps.lines().any(|l| l.starts_with(c)) {
            Step::new(&format!("rustup component add {c}")).run(Command::new("rustup").args([
                "component",
                "add",
                c,
            ]))?;
        }
    }
    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output();
    if !matches!(nextest, Ok(o) if o.status.success()) {
        Step::new("cargo install cargo-nextest").run(Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-nextest",
        ]))?;
    }
    Ok(())
}

pub fn ensure_cargo_fuzz() -> Result<(), String> {
    let ok = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output();
    if !matches!(ok, Ok(o) if o.status.success()) {
        Step::new("cargo install cargo-fuzz").run(Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-fuzz",
        ]))?;
    }
    Ok(())
}
