//! `ufd run` without the `ufd` binary: the reference for the CLI glue.
//!
//! ```text
//! cargo run -p ufd-harness --example ufd_run -- SCENARIO|DIR --image IMAGE
//!     [--firmware FILE] [--probe-disk ESP.img] [--artifacts DIR] [--jobs N] [--json] [--junit FILE]
//! ```
//! Exit status: 0 all scenarios passed, 1 some failed, 2 usage or load error.

use std::path::PathBuf;

use ufd_harness::scenario::{junit_xml, results_json, results_table, run_path, RunOptions};

fn usage(msg: &str) -> ! {
    eprintln!("ufd run: {msg}\nusage: ufd_run SCENARIO|DIR --image IMAGE [--firmware FILE] [--probe-disk FILE] [--artifacts DIR] [--jobs N] [--json] [--junit FILE]");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut opts = RunOptions {
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        artifacts: Some(PathBuf::from("target/ufd-run-artifacts")),
        ..RunOptions::default()
    };
    let (mut json, mut junit) = (false, None);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--image" => opts.image = Some(val("--image").into()),
            "--firmware" => opts.firmware = Some(val("--firmware").into()),
            "--probe-disk" => opts.probe_disk = Some(val("--probe-disk").into()),
            "--artifacts" => opts.artifacts = Some(val("--artifacts").into()),
            "--jobs" => {
                opts.jobs = val("--jobs")
                    .parse()
                    .unwrap_or_else(|_| usage("--jobs takes a number"))
            }
            "--json" => json = true,
            "--junit" => junit = Some(PathBuf::from(val("--junit"))),
            s if s.starts_with("--") => usage(&format!("unknown option {s}")),
            s => path = Some(PathBuf::from(s)),
        }
    }
    let path = path.unwrap_or_else(|| usage("no scenario file or directory"));
    let results = match run_path(&path, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ufd run: {e}");
            std::process::exit(2);
        }
    };
    if json {
        println!("{}", results_json(&results));
    } else {
        print!("{}", results_table(&results));
    }
    if let Some(f) = junit {
        if let Err(e) = std::fs::write(&f, junit_xml("ufd-scenarios", &results)) {
            eprintln!(
                "ufd run: {}: cannot write the JUnit report: {e}",
                f.display()
            );
            std::process::exit(2);
        }
    }
    std::process::exit(if results.iter().all(|r| r.passed) {
        0
    } else {
        1
    });
}
