//! `cargo xtask images`: build the built-in synthetic Windows-shaped images
//! (`vm-images/synthetic`, crate `ufd-synthetic`) into `target/vm-images/<name>.wim`.
//!
//! A WIM is rebuilt only when the content hash of its inputs changes (the embedded text
//! sources, the overrides, the builder version and the wimlib version); the hash is kept
//! in `target/vm-images/<name>.wim.key`. Overrides: set `UFD_SYNTHETIC_OVERRIDES` to a
//! directory that mirrors image paths (e.g. `DIR/Windows/Boot/PCAT/bootmgr`) to replace
//! stand-ins with real files (the guest probe). Needs `wimcapture` (Debian: wimtools).
use std::path::PathBuf;

use crate::util::workspace_root;

/// Build (or find up to date) the WIM of one image; prints its path.
pub fn build(name: &str) -> Result<PathBuf, String> {
    let out = workspace_root().join("target/vm-images");
    let overrides = ufd_synthetic::overrides_from_env()?;
    let built = ufd_synthetic::build(name, &out, &overrides)?;
    println!(
        "{name}: {} ({}, key {})",
        built.wim.display(),
        if built.rebuilt { "built" } else { "up to date" },
        built.key
    );
    Ok(built.wim)
}

/// Build every image ([`ufd_synthetic::IMAGES`]).
pub fn build_all() -> Result<Vec<PathBuf>, String> {
    ufd_synthetic::IMAGES.iter().map(|n| build(n)).collect()
}
