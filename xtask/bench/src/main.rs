//! `cargo xtask bench`: speed goals as ratios against baselines run in the same run.
//!
//! 1. hive: parse + `.reg` export vs `hivexregedit --export` (≥ 10×), parse + walk vs the `regf`
//!    crate (≥ 2×) — [`hive`];
//! 2. provisioning at full size: ours vs the wimapply floor (≤ 1.3×) and vs the naive loop +
//!    ntfs-3g + cp pipeline (≥ 8×), bytes written vs payload + metadata (≤ 1.1×) —
//!    [`provisioning`].
//!
//! Usage: `ufd-bench [HIVE] [--only hive|provision]`. A missed goal is reported, not an error;
//! the exit status is non-zero only when a step fails or the compared hive readers disagree.

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
                eprintln!("ufd-bench: unknown option {a}; usage: ufd-bench [HIVE] [--only hive|provision]");
                std::process::exit(2);
            }
            _ => hive_path = Some(PathBuf::from(a)),
        }
    }
    if let Some(o) = only
        .as_deref()
        .filter(|o| !matches!(*o, "hive" | "provision"))
    {
        eprintln!("ufd-bench: --only {o}: expected hive or provision");
        std::process::exit(2);
    }
    let mut failed = false;
    if only.as_deref() != Some("provision") {
        let hive_path = hive_path.unwrap_or_else(hive::default_hive);
        if let Err(e) = hive::run(&hive_path) {
            eprintln!("bench: {e}");
            failed = true;
        }
    }
    if only.as_deref() != Some("hive") {
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
    if failed {
        std::process::exit(1);
    }
}
