//! `cargo xtask bench`: speed goals as ratios against baselines run in the same run.
//!
//! 1. hive: parse + `.reg` export vs `hivexregedit --export` (≥ 10×), parse + walk vs the `regf`
//!    crate (≥ 2×) — [`hive`];
//! 2. provisioning at full size: ours vs the wimapply floor (≤ 1.3×) and vs the naive loop +
//!    ntfs-3g + cp pipeline (≥ 8×), bytes written vs payload + metadata (≤ 1.1×) —
//!    [`provisioning`];
//! 3. boot: the scenario matrix in QEMU, boot-to-verdict vs the bare firmware boot to the probe's
//!    first line (≤ 2×), whole matrix with 2 jobs (≤ 3 min + late waits) — [`boot`].
//!
//! Usage: `ufd-bench [HIVE] [--only hive|provision|boot]`. A missed goal is reported, not an
//! error; the exit status is non-zero only when a step fails or the compared hive readers
//! disagree.

mod boot;
mod hive;
mod measure;
mod naive;
mod payload;
mod provisioning;

use std::path::PathBuf;

fn main() {
    let mut hive_path = None;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => only = args.next(),
            _ if a.starts_with("--") => {
                eprintln!("ufd-bench: unknown option {a}; usage: ufd-bench [HIVE] [--only hive|provision|boot]");
                std::process::exit(2);
            }
            _ => hive_path = Some(PathBuf::from(a)),
        }
    }
    if let Some(o) = only
        .as_deref()
        .filter(|o| !matches!(*o, "hive" | "provision" | "boot"))
    {
        eprintln!("ufd-bench: --only {o}: expected hive, provision or boot");
        std::process::exit(2);
    }
    let mut failed = false;
    if only.is_none() || only.as_deref() == Some("hive") {
        let hive_path = hive_path.unwrap_or_else(hive::default_hive);
        if let Err(e) = hive::run(&hive_path) {
            eprintln!("bench: {e}");
            failed = true;
        }
    }
    if only.is_none() || only.as_deref() == Some("provision") {
        println!();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
        let result = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::canonicalize(&dir))
            .map_err(|e| format!("{}: {e}", dir.display()))
            .and_then(|dir| provisioning::run_bench(&dir));
        if let Err(e) = result {
            eprintln!("bench: provisioning: {e}");
            failed = true;
        }
    }
    if only.is_none() || only.as_deref() == Some("boot") {
        println!();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        if let Err(e) = boot::run(&root) {
            eprintln!("bench: boot: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
