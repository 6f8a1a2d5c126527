//! `ufd-harness`: QEMU from a typed machine description, a QMP client, supervised runs with
//! deadlines and artifacts, and the scenario runner behind `ufd run` / `cargo xtask e2e`.
//!
//! * [`machine`] — [`Machine`] (serde) → exact QEMU argv.
//! * [`firmware`] — OVMF/SeaBIOS discovery, per-run pflash copies.
//! * [`accel`] — KVM where it works for the firmware, TCG otherwise.
//! * [`process`] — the QEMU guard (kill + reap on drop, deadline, Ctrl-C), VM slots, log tails.
//! * [`qmp`] — QMP client with transcript.
//! * [`probe`] — the guest probe's `UFDPROBE {json}` protocol.
//! * [`run`] — one supervised run with late surfacing, block statistics, artifacts.
//! * [`scenario`] — scenario files, expectations, the runner, JUnit XML and the results table.
//!
//! Facts cited as "qemu.md §N" are in `shared/reference/qemu.md` (measured on QEMU 7.2).

pub mod accel;
pub mod error;
pub mod firmware;
pub mod machine;
pub mod probe;
pub mod process;
pub mod qmp;
pub mod run;
pub mod scenario;

pub use error::{Error, Result};
pub use machine::Machine;
