//! Build the BIOS stand-in for `\bootmgr` (`vm-images/bios-probe`, package `ufd-bios-probe`):
//! `cargo build --release --target x86_64-unknown-none` into `<root>/target/bios-probe`, then
//! GNU `objcopy -O binary` (Debian `binutils`) flattens the ELF, linked at 0x20000 by the
//! crate's `link.ld`, into the file our NTFS boot record loads to 2000:0000. The result must
//! fit the boot record's load window (`ufd_bootcode::MAX_BOOTMGR_SIZE`, 0x78000 bytes) and
//! start with the real-mode entry.
//!
//! Self-contained (std only) so that tests outside xtask can include it with `#[path]`
//! (harness/tests/bios_boot.rs does).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The boot record's limit for `\bootmgr` (provisioner/bootcode/src/vbr.rs
/// `MAX_BOOTMGR_SIZE` = 0x98000 - 0x20000).
pub const MAX_BOOTMGR_SIZE: u64 = 0x78000;

/// The rustup target the stand-in is built for (tier 2, prebuilt core/alloc).
pub const BIOS_PROBE_TARGET: &str = "x86_64-unknown-none";

fn run(cmd: &mut Command, what: &str, install: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "{what}: cannot run {:?} ({e}); {install}",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Build the stand-in and return the path of the flat `bootmgr` file
/// (`<root>/target/bios-probe/bootmgr`).
pub fn build_bios_probe(root: &Path) -> Result<PathBuf, String> {
    let target_dir = root.join("target/bios-probe");
    let manifest = root.join("vm-images/bios-probe/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo)
            .current_dir(root)
            // Flags meant for the host build must not reach the guest program.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .args([
                "build",
                "--release",
                "--target",
                BIOS_PROBE_TARGET,
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir),
        "build the BIOS stand-in (ufd-bios-probe)",
        &format!("install Rust and `rustup target add {BIOS_PROBE_TARGET}`"),
    )?;
    let elf = target_dir.join(format!("{BIOS_PROBE_TARGET}/release/ufd-bios-probe"));
    if !elf.is_file() {
        return Err(format!(
            "the BIOS stand-in build did not produce {}",
            elf.display()
        ));
    }
    let flat = target_dir.join("bootmgr");
    run(
        Command::new("objcopy")
            .args(["-O", "binary"])
            .arg(&elf)
            .arg(&flat),
        "flatten the BIOS stand-in (objcopy -O binary)",
        "install the Debian package `binutils`",
    )?;
    let bytes = std::fs::read(&flat).map_err(|e| format!("{}: {e}", flat.display()))?;
    if bytes.len() as u64 > MAX_BOOTMGR_SIZE {
        return Err(format!(
            "{}: {} bytes, the boot record loads at most {MAX_BOOTMGR_SIZE} (0x78000) bytes to 2000:0000",
            flat.display(),
            bytes.len()
        ));
    }
    // entry.S starts with `cli` (FAh): the real-mode entry must be the file's first byte.
    if bytes.first() != Some(&0xFA) {
        return Err(format!(
            "{}: does not start with the real-mode entry (first byte {:?}, expected FAh `cli`); check link.ld",
            flat.display(),
            bytes.first()
        ));
    }
    Ok(flat)
}
