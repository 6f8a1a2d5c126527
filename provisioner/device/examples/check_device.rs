//! `cargo run -p ufd-device --example check_device -- DEVICE [--sysfs-root DIR] [--json]`
//! judges a device the way `ufd check-device` will; `--materialize CASE DIR` writes one of the
//! synthetic sysfs trees (`ufd_device::fakesys::CASES`) to DIR for use with `--sysfs-root`.

use std::path::PathBuf;
use std::process::ExitCode;

use ufd_device::check::{check_device, CheckOptions};
use ufd_device::fakesys;
use ufd_device::sysfs::Sysfs;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--materialize") {
        let (Some(case), Some(dir)) = (args.get(1), args.get(2)) else {
            eprintln!(
                "usage: --materialize CASE DIR (cases: {})",
                fakesys::CASES.join(", ")
            );
            return ExitCode::from(2);
        };
        let Some((name, tree)) = fakesys::case(case) else {
            eprintln!(
                "unknown case {case:?} (cases: {})",
                fakesys::CASES.join(", ")
            );
            return ExitCode::from(2);
        };
        if let Err(e) = tree.materialize(&PathBuf::from(dir)) {
            eprintln!("{dir}: {e}");
            return ExitCode::from(1);
        }
        println!("{dir}: sysfs tree for /dev/{name}");
        return ExitCode::SUCCESS;
    }
    let mut device = None;
    let mut root = PathBuf::from("/");
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--sysfs-root" => match it.next() {
                Some(r) => root = PathBuf::from(r),
                None => {
                    eprintln!("--sysfs-root needs a directory");
                    return ExitCode::from(2);
                }
            },
            d => device = Some(PathBuf::from(d)),
        }
    }
    let Some(device) = device else {
        eprintln!("usage: DEVICE [--sysfs-root DIR] [--json] | --materialize CASE DIR");
        return ExitCode::from(2);
    };
    match check_device(&Sysfs::new(root), &device, CheckOptions::default()) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", r.text());
            }
            ExitCode::from(r.exit_code)
        }
        Err(e) => {
            eprintln!("ufd check-device: {e}");
            ExitCode::from(1)
        }
    }
}
