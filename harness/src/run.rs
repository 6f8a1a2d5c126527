//! One supervised QEMU run: per-run temp dir, firmware copies, a qcow2 overlay over the UFD
//! image, QMP, the probe's records, late surfacing, block statistics, deadline, artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::accel;
use crate::error::{require_tool, Error, Result};
use crate::firmware;
use crate::machine::{
    shell_line, Accel, AccelChoice, Machine, ProbeChannel, RunPaths, UFD_ID, UFD_NODE,
};
use crate::probe::{self, Record};
use crate::process::{Qemu, Tail, QEMU};
use crate::qmp::{BlockStats, Qmp};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Names the run in reports and the artifacts sub-directory.
    pub name: String,
    pub machine: Machine,
    /// The UFD image (raw). Never written: QEMU writes into a per-run qcow2 overlay.
    pub image: PathBuf,
    /// `--firmware FILE` (OVMF scenarios).
    pub firmware: Option<PathBuf>,
    /// `--bios-firmware FILE` (SeaBIOS scenarios).
    pub bios_firmware: Option<PathBuf>,
    /// Accelerator override (else the machine's `accel`).
    pub accel: Option<AccelChoice>,
    /// Whole-run deadline, from spawn to the end of artifact collection.
    pub timeout: Duration,
    /// Late surfacing: on the probe's `handoff` record the UFD is `device_del`ed and
    /// `device_add`ed again this long after the hand-off.
    pub late: Option<Duration>,
    /// Where failing runs keep their artifacts (`<dir>/<name>/`).
    pub artifacts: Option<PathBuf>,
    /// A read-only probe ESP disk (see [`RunPaths::probe_disk`]).
    pub probe_disk: Option<PathBuf>,
    /// Stop at the first record with this `event` (besides `done`) that arrives after the late
    /// surfacing finished (or at any time when there is none).
    pub stop_on_event: Option<String>,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum RunEnd {
    /// The probe's `done` record arrived.
    Done,
    /// A record with [`RunSpec::stop_on_event`] arrived.
    StopEvent,
    /// The guest powered off or reset without `done` (QMP `SHUTDOWN` reason).
    GuestStopped(String),
    /// QEMU exited by itself (exit code; 33 = isa-debug-exit with value 0x10).
    Exited(Option<i32>),
    /// The boot code (MBR or partition boot record) printed this error before any boot
    /// manager ran ([`probe::BOOT_CODE_MESSAGES`]).
    BootCode(String),
    /// The deadline passed; QEMU was killed.
    Deadline,
    /// `KVM internal error` (the guest is paused for ever; QEMU was killed).
    KvmInternalError,
    /// The harness failed (QMP, files).
    HarnessError(String),
}

/// The hot-unplug/replug of a late-surfacing device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hotplug {
    pub handoff_ms: u64,
    /// When `DEVICE_DELETED` was received (ms since spawn).
    pub deleted_ms: Option<u64>,
    /// When `device_add` returned.
    pub added_ms: Option<u64>,
    pub error: Option<String>,
}

/// Cumulative block statistics of the UFD over the run (the counters restart on `device_add`,
/// qemu.md §4, so samples taken before each unplug are added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UfdIo {
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub wr_operations: u64,
    /// True when the last sample was taken at the end of the run with the UFD attached. False
    /// when QEMU exited first (e.g. isa-debug-exit; the numbers are a lower bound then) or the
    /// UFD was not attached at the end (a late device that never came back).
    pub final_sample: bool,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutput {
    pub name: String,
    pub accel: Accel,
    pub qemu_version: String,
    /// QEMU's process id (gone when `run` returns).
    pub pid: u32,
    /// The exact QEMU command line (shell-quoted).
    pub cmdline: String,
    pub end: RunEnd,
    pub exit_code: Option<i32>,
    pub records: Vec<Record>,
    /// `UFDPROBE` lines that did not parse.
    pub bad_records: Vec<String>,
    /// Every line of the probe channel (ms since spawn, text).
    pub lines: Vec<(u64, String)>,
    pub hotplug: Option<Hotplug>,
    pub ufd_io: UfdIo,
    pub duration_ms: u64,
    /// Set when artifacts were kept.
    pub artifacts: Option<PathBuf>,
    pub qemu_stderr: String,
}

impl RunOutput {
    /// The records as a summary (verdicts, hops, outcome).
    /// When no boot manager reported at all, a failed [`probe::BOOT_CODE_HOP`] (with the
    /// boot code's message, if one appeared) and the outcome `refused`.
    pub fn summary(&self) -> probe::Summary {
        let mut s = probe::Summary::of(&self.records);
        if let Some(h) = probe::boot_code_failure(&self.records, &self.lines) {
            s.hops.insert(0, h);
            if s.outcome.is_none() {
                s.outcome = Some(probe::BootOutcome::Refused);
            }
        }
        s
    }
}

fn ms(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

/// Create the per-run qcow2 overlay over `image` (qemu-utils' `qemu-img`).
pub fn make_overlay(image: &Path, overlay: &Path) -> Result<()> {
    let qemu_img = require_tool("qemu-img", "qemu-utils")?;
    let abs =
        std::fs::canonicalize(image).map_err(|e| Error::io(image, "open the UFD image", e))?;
    let out = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&abs)
        .arg(overlay)
        .output()
        .map_err(|e| Error::Process {
            what: "run qemu-img".into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Process {
            what: format!("qemu-img create overlay over {}", abs.display()),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

struct Late {
    delay: Duration,
    state: LateState,
    report: Hotplug,
}

enum LateState {
    Armed,
    Waiting(Instant),
    Finished,
}

/// Run `spec`. `failed` decides, while QEMU is still up, whether the run failed (then a
/// screendump is taken and artifacts are kept).
pub fn run(spec: &RunSpec, failed: &dyn Fn(&RunOutput) -> bool) -> Result<RunOutput> {
    let t0 = Instant::now();
    let deadline = t0 + spec.timeout;
    spec.machine.validate()?;
    let dir = tempfile::Builder::new()
        .prefix("ufd-run-")
        .tempdir()
        .map_err(|e| Error::io(Path::new("/tmp"), "create a temporary directory", e))?;
    let mut paths = RunPaths::in_dir(dir.path());
    if let Some(p) = &spec.probe_disk {
        paths.probe_disk =
            Some(std::fs::canonicalize(p).map_err(|e| Error::io(p, "open the probe disk", e))?);
    }
    make_overlay(&spec.image, &paths.ufd_image)?;
    let user_firmware = match spec.machine.firmware {
        crate::machine::FirmwareKind::Ovmf => spec.firmware.as_deref(),
        crate::machine::FirmwareKind::Seabios => spec.bios_firmware.as_deref(),
    };
    let source = firmware::discover(spec.machine.firmware, user_firmware)?;
    let fw = firmware::prepare(&source, dir.path())?;
    let accel = match spec.accel.unwrap_or(spec.machine.accel) {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => match accel::detect(&source)? {
            // A guest under KVM sees VT-x/AMD-V only through nested virtualization: where the
            // host's KVM does not offer it, HOST-VT could not pass, so the scenario runs on TCG.
            Accel::Kvm if spec.machine.cpu.vt && !accel::kvm_offers_nested_vt() => Accel::Tcg,
            a => a,
        },
    };
    let argv = spec
        .machine
        .argv(&paths, &fw, accel, accel::host_vendor())?;
    let cmdline = shell_line(QEMU, &argv);
    std::fs::write(dir.path().join("qemu.cmdline"), format!("{cmdline}\n"))
        .map_err(|e| Error::io(dir.path(), "write qemu.cmdline", e))?;
    let stderr_path = dir.path().join("qemu.stderr");
    let mut vm = Qemu::spawn(&argv, &stderr_path)?;
    let t_vm = Instant::now();
    let mut out = RunOutput {
        name: spec.name.clone(),
        accel,
        qemu_version: String::new(),
        pid: vm.pid(),
        cmdline,
        end: RunEnd::Deadline,
        exit_code: None,
        records: Vec::new(),
        bad_records: Vec::new(),
        lines: Vec::new(),
        hotplug: None,
        ufd_io: UfdIo::default(),
        duration_ms: 0,
        artifacts: None,
        qemu_stderr: String::new(),
    };
    let mut qmp = match Qmp::connect(&paths.qmp_socket, deadline, || vm.try_wait().is_none()) {
        Ok(q) => Some(q),
        Err(e) => {
            out.end = match vm.try_wait() {
                // QEMU refused the command line (its stderr says why).
                Some(st) => RunEnd::Exited(st.code()),
                None => RunEnd::HarnessError(e.to_string()),
            };
            None
        }
    };
    if let Some(q) = &qmp {
        out.qemu_version = q.version.clone();
    }
    let mut tail = Tail::new(match spec.machine.probe_channel {
        ProbeChannel::Debugcon => &paths.debugcon_log,
        ProbeChannel::Serial => &paths.serial_log,
    });
    let mut late = spec.late.map(|delay| Late {
        delay,
        state: LateState::Armed,
        report: Hotplug::default(),
    });
    let mut io_before_unplug = BlockStats::default();
    let mut last_stats: Option<BlockStats> = None;
    let mut last_sample = Instant::now();
    let mut done = false;
    let mut shutdown_seen = false;
    if let Some(q) = qmp.as_mut() {
        loop {
            let lines = tail.poll();
            let mut stopped = false;
            for line in lines {
                let t = t_vm.elapsed().as_millis() as u64;
                if stopped {
                    // Keep the console log complete; records after the stop are not read.
                    out.lines.push((t, line));
                    continue;
                }
                if let Some(rec) = probe::parse_line(&line) {
                    match rec {
                        Ok(v) => {
                            let ev = probe::event(&v).map(str::to_string);
                            let handoff = probe::is_handoff(&v);
                            out.records.push(Record { t_ms: t, value: v });
                            if handoff {
                                if let Some(l) = late.as_mut() {
                                    if matches!(l.state, LateState::Armed) {
                                        l.report.handoff_ms = t;
                                        // Sample the counters: they restart on device_add.
                                        if let Ok(Some(s)) =
                                            q.blockstats(UFD_NODE, UFD_ID, deadline)
                                        {
                                            io_before_unplug.rd_bytes += s.rd_bytes;
                                            io_before_unplug.wr_bytes += s.wr_bytes;
                                            io_before_unplug.wr_operations += s.wr_operations;
                                        }
                                        last_stats = None;
                                        let del_deadline =
                                            deadline.min(Instant::now() + Duration::from_secs(10));
                                        match q.device_del(UFD_ID, del_deadline) {
                                            Ok(_) => {
                                                l.report.deleted_ms =
                                                    Some(t_vm.elapsed().as_millis() as u64);
                                                l.state =
                                                    LateState::Waiting(Instant::now() + l.delay);
                                            }
                                            Err(e) => {
                                                l.report.error = Some(format!("device_del: {e}"));
                                                l.state = LateState::Finished;
                                            }
                                        }
                                    }
                                }
                            }
                            if ev.as_deref() == Some("done") {
                                done = true;
                                out.end = RunEnd::Done;
                            } else if ev.is_some()
                                && ev == spec.stop_on_event
                                && late
                                    .as_ref()
                                    .is_none_or(|l| matches!(l.state, LateState::Finished))
                            {
                                out.end = RunEnd::StopEvent;
                                stopped = true;
                            }
                        }
                        Err(bad) => out.bad_records.push(bad),
                    }
                } else if out.records.is_empty() {
                    // Before any boot manager: the boot code's error messages end the run
                    // (the code halts, or INT 18h hands back to a firmware with nothing else).
                    if let Some((m, _)) = probe::BOOT_CODE_MESSAGES
                        .iter()
                        .find(|(m, _)| line.contains(m))
                    {
                        out.end = RunEnd::BootCode((*m).to_string());
                        stopped = true;
                    }
                }
                out.lines.push((t, line));
            }
            if done || stopped {
                break;
            }
            if let Some(l) = late.as_mut() {
                if let LateState::Waiting(at) = l.state {
                    if Instant::now() >= at {
                        let args = spec.machine.ufd_device_add_args()?;
                        match q.device_add(args, deadline) {
                            Ok(()) => l.report.added_ms = Some(t_vm.elapsed().as_millis() as u64),
                            Err(e) => l.report.error = Some(format!("device_add: {e}")),
                        }
                        l.state = LateState::Finished;
                    }
                }
            }
            if let Some(st) = vm.try_wait() {
                out.exit_code = st.code();
                out.end = RunEnd::Exited(st.code());
                break;
            }
            if accel == Accel::Kvm && accel::is_kvm_internal_error(&vm.stderr_text()) {
                out.end = RunEnd::KvmInternalError;
                break;
            }
            match q.poll_events() {
                Ok(()) => {}
                Err(e) => {
                    if vm.wait_timeout(Duration::from_millis(500)).is_some() {
                        continue;
                    }
                    out.end = RunEnd::HarnessError(e.to_string());
                    break;
                }
            }
            if let Some(ev) = q
                .take_events()
                .into_iter()
                .find(|e| e["event"] == "SHUTDOWN")
            {
                let reason = ev["data"]["reason"].as_str().unwrap_or("?").to_string();
                out.end = RunEnd::GuestStopped(reason);
                shutdown_seen = true;
                break;
            }
            if last_sample.elapsed() >= Duration::from_secs(1) {
                last_sample = Instant::now();
                if let Ok(s) = q.blockstats(UFD_NODE, UFD_ID, deadline) {
                    last_stats = s;
                }
            }
            if Instant::now() >= deadline {
                out.end = RunEnd::Deadline;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Drain what is left on the channel.
    for line in tail.poll().into_iter().chain(tail.rest()) {
        let t = t_vm.elapsed().as_millis() as u64;
        if let Some(Ok(v)) = probe::parse_line(&line) {
            // `done` written just before the power-off event was read in the same round.
            if probe::event(&v) == Some("done")
                && matches!(out.end, RunEnd::GuestStopped(_) | RunEnd::Exited(_))
            {
                done = true;
                out.end = RunEnd::Done;
            }
            out.records.push(Record { t_ms: t, value: v });
        }
        out.lines.push((t, line));
    }
    // A hot-plug report exists once the hand-off started it.
    if let Some(l) = late.filter(|l| !matches!(l.state, LateState::Armed)) {
        out.hotplug = Some(l.report);
    }
    // After `done` the guest powers off; with -no-shutdown QEMU stays up for the last sample.
    let alive = vm.try_wait().is_none();
    if let (true, Some(q)) = (alive, qmp.as_mut()) {
        if done && !shutdown_seen {
            let _ = q.wait_event(
                "SHUTDOWN",
                deadline.min(Instant::now() + Duration::from_secs(3)),
                |_| true,
            );
        }
        match q.blockstats(
            UFD_NODE,
            UFD_ID,
            deadline.max(Instant::now() + Duration::from_secs(2)),
        ) {
            Ok(Some(s)) => {
                last_stats = Some(s);
                out.ufd_io.final_sample = true;
            }
            Ok(None) => {
                last_stats = None;
                out.ufd_io.final_sample = false;
            }
            Err(_) => out.ufd_io.final_sample = false,
        }
    }
    let cur = last_stats.unwrap_or_default();
    out.ufd_io.rd_bytes = io_before_unplug.rd_bytes + cur.rd_bytes;
    out.ufd_io.wr_bytes = io_before_unplug.wr_bytes + cur.wr_bytes;
    out.ufd_io.wr_operations = io_before_unplug.wr_operations + cur.wr_operations;
    out.duration_ms = ms(t0);
    let is_failure = failed(&out);
    let png = dir.path().join("screen.png");
    if is_failure && vm.try_wait().is_none() {
        if let Some(q) = qmp.as_mut() {
            let sd = Instant::now() + Duration::from_secs(5);
            if let Err(e) = q.screendump_png(&png, sd) {
                out.bad_records.push(format!("screendump failed: {e}"));
            }
        }
    }
    if vm.try_wait().is_none() {
        if let Some(q) = qmp.as_mut() {
            let _ = q.quit(Instant::now() + Duration::from_secs(2));
        }
        if vm.wait_timeout(Duration::from_secs(2)).is_none() {
            vm.kill();
        }
    }
    let st = vm.kill();
    if out.exit_code.is_none() {
        out.exit_code = st.and_then(|s| s.code());
    }
    out.qemu_stderr = vm.stderr_text();
    drop(vm);
    if let Some(q) = &qmp {
        let _ = std::fs::write(dir.path().join("qmp.log"), q.transcript().join("\n") + "\n");
    }
    if is_failure {
        if let Some(base) = &spec.artifacts {
            out.artifacts = Some(keep_artifacts(dir.path(), base, &spec.name, &out)?);
        }
    }
    out.duration_ms = ms(t0);
    Ok(out)
}

/// Copy the run's logs into `<base>/<name>/`: `serial.log`, `debugcon.log`, `qmp.log`,
/// `qemu.cmdline`, `qemu.stderr`, `screen.png` (when taken) and `run.json`.
fn keep_artifacts(run_dir: &Path, base: &Path, name: &str, out: &RunOutput) -> Result<PathBuf> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dest = base.join(safe);
    std::fs::create_dir_all(&dest)
        .map_err(|e| Error::io(&dest, "create the artifacts directory", e))?;
    for f in [
        "serial.log",
        "debugcon.log",
        "qmp.log",
        "qemu.cmdline",
        "qemu.stderr",
        "screen.png",
    ] {
        let from = run_dir.join(f);
        if from.is_file() {
            std::fs::copy(&from, dest.join(f))
                .map_err(|e| Error::io(&from, "keep the artifact", e))?;
        }
    }
    let mut json: Value = serde_json::to_value(out).unwrap_or(Value::Null);
    json["artifacts"] = Value::String(dest.display().to_string());
    let _ = std::fs::write(
        dest.join("run.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    );
    Ok(dest)
}
