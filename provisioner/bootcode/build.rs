//! Assembles `asm/mbr.S` and `asm/ntfs_vbr.S` with GNU binutils (`as --32`, 16-bit
//! `.code16` code; `ld --oformat binary`) into `$OUT_DIR/{mbr,ntfs_vbr}.bin`, which
//! `src/lib.rs` embeds with `include_bytes!`. binutils (Debian package `binutils`)
//! is required at build time; a missing tool fails the build with an install hint.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(tool: &str, args: &[&std::ffi::OsStr]) {
    let out = match Command::new(tool).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!(
            "ufd-bootcode build: cannot run `{tool}` ({e}); install the Debian package `binutils` \
             (GNU as/ld assemble the 16-bit boot code)"
        ),
    };
    if !out.status.success() {
        panic!(
            "ufd-bootcode build: `{tool} {}` failed ({}):\n{}{}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn assemble(src: &Path, out_dir: &Path, name: &str, link_addr: &str) {
    let obj = out_dir.join(format!("{name}.o"));
    let bin = out_dir.join(format!("{name}.bin"));
    run(
        "as",
        &[
            "--32".as_ref(),
            "-I".as_ref(),
            src.parent().expect("asm/ holds the sources").as_os_str(),
            "-o".as_ref(),
            obj.as_os_str(),
            src.as_os_str(),
        ],
    );
    run(
        "ld",
        &[
            "-m".as_ref(),
            "elf_i386".as_ref(),
            "-Ttext".as_ref(),
            link_addr.as_ref(),
            "-e".as_ref(),
            "_start".as_ref(),
            "--oformat".as_ref(),
            "binary".as_ref(),
            "-o".as_ref(),
            bin.as_os_str(),
            obj.as_os_str(),
        ],
    );
}

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (file, name, addr) in [
        ("mbr.S", "mbr", "0x600"),
        ("ntfs_vbr.S", "ntfs_vbr", "0x7C00"),
    ] {
        let src = manifest.join("asm").join(file);
        println!("cargo:rerun-if-changed={}", src.display());
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("asm/console.inc").display()
        );
        assemble(&src, &out_dir, name, addr);
    }
    println!("cargo:rerun-if-changed=build.rs");
}
