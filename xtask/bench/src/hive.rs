//! The hive benchmarks of `cargo xtask bench`, on the same file in the same run:
//!
//! 1. parse + full `.reg` export of a hive (default: the 11 MB Windows 7 SYSTEM fixture):
//!    ours vs `hivexregedit --export HIVE '\'` (goal: ≥ 10× faster);
//! 2. parse + walk of every key and value (name and data): ours vs the crates.io `regf` crate (goal: ≥ 2×).
//!
//! Medians of several runs; wall-clock ratios, so both sides share the machine's noise.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ufd_formats::hive::{regtext, Hive, Key};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed());
        last = Some(r);
    }
    (median(times), last.expect("runs > 0"))
}

/// (keys, values, data bytes) seen by our reader.
fn walk_ours(key: &Key<'_>, depth: usize, acc: &mut (u64, u64, u64)) {
    assert!(depth < 512, "key tree deeper than 512");
    acc.0 += 1;
    for v in key.values().expect("values") {
        let name = v.name().expect("value name");
        let data = v.data().expect("value data");
        acc.1 += 1;
        let _ = name;
        acc.2 += data.len() as u64;
    }
    for k in key.subkeys().expect("subkeys") {
        let _name = k.name().expect("key name");
        walk_ours(&k, depth + 1, acc);
    }
}

fn walk_regf(key: &regf::hive::RegistryKey<'_>, depth: usize, acc: &mut (u64, u64, u64)) {
    assert!(depth < 512, "key tree deeper than 512");
    acc.0 += 1;
    for v in key.values().expect("regf values") {
        let _name = v.name();
        let data = v.raw_data().expect("regf data");
        acc.1 += 1;
        acc.2 += data.len() as u64;
    }
    for k in key.subkeys().expect("regf subkeys") {
        let _name = k.name();
        walk_regf(&k, depth + 1, acc);
    }
}

/// The default hive: the 11 MB Windows 7 SYSTEM fixture (`<workspace>/../shared/fixtures`,
/// `UFD_FIXTURES` overrides).
pub fn default_hive() -> std::path::PathBuf {
    std::env::var_os("UFD_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
        .join("hives/win7-sp1-x86/SYSTEM")
}

/// Run both hive benchmarks on `hive_path` and print their table. `Err` when the compared
/// implementations disagree on the content (the ratios would not be comparable).
pub fn run(hive_path: &Path) -> Result<(), String> {
    let data = std::fs::read(hive_path).map_err(|e| format!("{}: {e}", hive_path.display()))?;
    println!(
        "bench input: {} ({} bytes)",
        hive_path.display(),
        data.len()
    );

    // 1. export
    let (ours_export, text) = time(10, || {
        let h = Hive::parse(&data).expect("parse");
        let mut out = String::with_capacity(data.len() * 2);
        regtext::export(&h, "\\", &mut out).expect("export");
        out
    });
    let (hivex_export, hivex_text) = time(3, || {
        let out = Command::new("hivexregedit")
            .arg("--export")
            .arg(hive_path)
            .arg("\\")
            .stderr(Stdio::null())
            .output()
            .expect("run hivexregedit (apt-get install libwin-hivex-perl)");
        assert!(out.status.success(), "hivexregedit failed");
        out.stdout
    });
    let identical = text.as_bytes() == hivex_text.as_slice();

    // 2. walk
    let (ours_walk, ours_counts) = time(10, || {
        let h = Hive::parse(&data).expect("parse");
        let mut acc = (0, 0, 0);
        walk_ours(&h.root().expect("root"), 0, &mut acc);
        acc
    });
    let mut regf_runs = Vec::new();
    let mut regf_counts = (0, 0, 0);
    for _ in 0..10 {
        let copy = data.clone(); // regf takes ownership; the copy is made outside the timed region
        let t = Instant::now();
        let h = regf::RegistryHive::from_bytes(copy).expect("regf parse");
        let mut acc = (0, 0, 0);
        walk_regf(&h.root_key().expect("regf root"), 0, &mut acc);
        regf_runs.push(t.elapsed());
        regf_counts = acc;
    }
    let regf_walk = median(regf_runs);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let export_ratio = hivex_export.as_secs_f64() / ours_export.as_secs_f64();
    let walk_ratio = regf_walk.as_secs_f64() / ours_walk.as_secs_f64();
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>8} {:>6}  verdict",
        "benchmark", "ours ms", "base ms", "ratio", "goal"
    );
    println!(
        "{:<46} {:>10.1} {:>10.1} {:>7.1}x {:>5}x  {}",
        "parse + .reg export  (vs hivexregedit --export)",
        ms(ours_export),
        ms(hivex_export),
        export_ratio,
        10,
        if export_ratio >= 10.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "{:<46} {:>10.1} {:>10.1} {:>7.1}x {:>5}x  {}",
        "parse + walk keys/values (vs regf crate)",
        ms(ours_walk),
        ms(regf_walk),
        walk_ratio,
        2,
        if walk_ratio >= 2.0 { "met" } else { "MISSED" }
    );
    println!();
    println!("export identical to hivexregedit: {identical}");
    println!("walk counts (keys, values, data bytes): ours {ours_counts:?}, regf {regf_counts:?}");
    if !identical || ours_counts.0 != regf_counts.0 || ours_counts.1 != regf_counts.1 {
        return Err(
            "the compared hive implementations disagree on the content; ratios are not comparable"
                .into(),
        );
    }
    Ok(())
}
