//! Shared test support: where the real Windows-made fixtures live.
//!
//! The fixtures are in `shared/fixtures/` beside the repository clone (not in it).
//! `UFD_FIXTURES` overrides the location. Tests that need them are named
//! `fixture_*`; when the folder is absent they FAIL with a clear message (never
//! pass silently), and `cargo xtask ci` excludes them by name and prints each
//! one as skipped.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("UFD_FIXTURES") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// Path of a fixture file; panics with a clear message when the fixtures are absent.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_dir().join(rel);
    assert!(
        p.exists(),
        "fixture {} is missing (shared/fixtures not found beside the clone; set UFD_FIXTURES). \
         `cargo xtask ci` skips fixture_* tests by name when the folder is absent.",
        p.display()
    );
    p
}

pub fn read_fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap()
}

/// Every hive and BCD store in the fixtures (relative paths), each with a `.hivex.reg` beside it.
pub const HIVES: &[&str] = &[
    "hives/win7-sp1-x86/SYSTEM",
    "hives/win10-mobile/SAM",
    "hives/win10-mobile/SECURITY",
    "hives/win10-mobile/ELAM",
    "hives/win10-mobile/BBI",
    "hives/win10-mobile/DRIVERS",
    "hives/win10-mobile/DEFAULT",
    "bcd/win7-bios/BCD",
    "bcd/empty-createstore/BCD",
    "bcd/ntloader/bcd",
    "bcd/win10-iso-ramdisk/bcd",
    "bcd/win10-uefi/BCD",
    "bcd/template-desktop/BCDTemplate",
];

pub const BCD_STORES: &[&str] = &[
    "bcd/win7-bios/BCD",
    "bcd/empty-createstore/BCD",
    "bcd/ntloader/bcd",
    "bcd/win10-iso-ramdisk/bcd",
    "bcd/win10-uefi/BCD",
    "bcd/template-desktop/BCDTemplate",
];

/// Is an oracle tool installed? Interop tests that need it fail with a clear message
/// when it is not (the README's test command installs it).
pub fn require_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("oracle tool `{name}` is not installed; run the README's test command (`cargo xtask ci`) which installs it"))
}
