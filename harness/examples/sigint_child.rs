//! Used by the `qemu_ctrl_c_leaves_no_orphan` test: starts QEMU (SeaBIOS, no disk) under the
//! harness's guard, prints `PID <qemu pid>` and waits to be interrupted.

use std::io::Write;

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let argv: Vec<String> = [
        "-nodefaults",
        "-machine",
        "q35,accel=tcg",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let q = match ufd_harness::process::Qemu::spawn(&argv, &dir.path().join("stderr")) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("PID {}", q.pid());
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(30));
    drop(q);
    eprintln!("not interrupted");
    std::process::exit(3);
}
