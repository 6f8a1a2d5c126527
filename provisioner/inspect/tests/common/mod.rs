//! Shared by the image tests: what is theirs over `ufd-testkit` (which builds the partitions and
//! the disk the way the provisioner does: mkntfs on partition files, wimlib applying a tree into
//! NTFS, an MBR spliced in front): the image sizes, the Windows volume's files and verdict
//! lookups. Needs Debian `ntfs-3g` and `wimtools`.
#![allow(dead_code)]

use std::path::Path;

use ufd_formats::bcd::Store;
use ufd_formats::policy::Outcome;
use ufd_inspect::Report;
pub use ufd_testkit::{
    mbr, ntfs_partition, run, splice, store, system_hive, write, FILETIME, MIB, UFD_SIG, VHD_SIG,
};

/// Disk, VHD and partition sizes: small, so tests are fast (the UFD is far below 8 GB, so
/// UFD-CAPACITY fails: that is also the exit-code test).
pub const UFD_BYTES: u64 = 64 * MIB;
pub const VHD_BYTES: u64 = 24 * MIB;
/// The loader path the images' BCD names (the seed's BIOS layout).
pub const WINLOAD: &str = "\\Windows\\system32\\winload.exe";

/// The Windows volume's files the rules read: SYSTEM, BCD-Template, State.ini (generalized
/// unless `specialized`), winload and two language folders (en-US, de-DE).
pub fn windows_tree(win: &Path, system: &[u8], specialized: bool) {
    write(&win.join("Windows/System32/config/SYSTEM"), system);
    write(
        &win.join("Windows/System32/config/BCD-Template"),
        &Store::new().to_hive(FILETIME).unwrap(),
    );
    let state = if specialized {
        "IMAGE_STATE_COMPLETE"
    } else {
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    };
    write(
        &win.join("Windows/Setup/State/State.ini"),
        format!("[State]\r\nImageState={state}\r\n").as_bytes(),
    );
    write(
        &win.join("Windows/System32/en-US/winload.exe.mui"),
        &[1u8; 3000],
    );
    write(
        &win.join("Windows/System32/de-DE/winload.exe.mui"),
        &[2u8; 5000],
    );
    write(&win.join("Windows/System32/winload.exe"), b"MZ");
}

pub fn outcome(r: &Report, rule: &str) -> Outcome {
    r.verdict(rule)
        .unwrap_or_else(|| panic!("{rule} missing"))
        .outcome
}

pub fn evidence(r: &Report, rule: &str) -> String {
    r.verdict(rule).unwrap().evidence.clone()
}
