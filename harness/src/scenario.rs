//! Scenario files (`scenarios/*.toml`), expectations, the runner, JUnit XML and the results
//! table.
//!
//! A scenario = an image recipe (which synthetic image, provision options) + a [`Machine`] +
//! expectations: per-rule verdicts, the last boot-path hop reached, the outcome (`boots`,
//! `bugcheck 0x7B`, `refused`). The harness does not build images: `ufd run --image IMAGE`
//! gives one image for every scenario, or [`RunOptions::image_provider`] builds the recipe
//! (the CLI wires it to the provisioner).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::machine::{AccelChoice, Machine};
use crate::probe::{normalize, BootOutcome};
use crate::run::{self, RunEnd, RunOutput, RunSpec};

/// Which image a scenario boots and how it is provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecipe {
    /// Built-in synthetic image: `hyperv-2008r2` or `ws2008r2` (`ufd-synthetic`).
    pub synthetic: String,
    /// UFD size in bytes (default: the provisioner's).
    #[serde(default)]
    pub ufd_size: Option<u64>,
    /// Override `Control\PnP\PollBootPartitionTimeout` (ms).
    #[serde(default)]
    pub poll_boot_partition_timeout: Option<u32>,
    /// Skip the seed's step 6 (paging stays enabled).
    #[serde(default)]
    pub leave_paging_enabled: bool,
    /// Damage the BCD store after provisioning (the boot manager must refuse).
    #[serde(default)]
    pub corrupt_bcd: bool,
    /// The UFD layout the provisioner writes (`--firmware`): `bios` is the seed's (one active
    /// NTFS partition, `\bootmgr`, `\Boot\BCD`), `uefi` the Windows To Go-style ESP + NTFS.
    /// Default: from the machine's firmware (SeaBIOS → `bios`, OVMF → `uefi`).
    #[serde(default)]
    pub layout: Option<Layout>,
    /// After provisioning, zero the MBR's 440 bytes of boot code (partition table and 55 AA
    /// kept): what a partitioning tool that never wrote boot code leaves.
    #[serde(default)]
    pub break_mbr_code: bool,
    /// After provisioning, clear the active flag of every partition (diskpart's `active`
    /// skipped).
    #[serde(default)]
    pub clear_active_flag: bool,
    /// After provisioning, change the UFD's MBR disk signature, so the BCD's `partition=` and
    /// `vhd=[...]` devices name a disk that is not there (the stick re-partitioned after
    /// bcdboot).
    #[serde(default)]
    pub wrong_disk_signature: bool,
    /// After provisioning, move the VHD from the UFD's root into a folder (`\moved\`), as a
    /// technician tidying the stick would, so the loader's `vhd=[...]` path no longer exists.
    #[serde(default)]
    pub move_vhd: bool,
    /// The native-boot container (`ufd provision --format`): `vhd` (default, the seed's) or
    /// `vhdx` (Hyper-V Server 2012).
    #[serde(default)]
    pub format: Option<ContainerFormat>,
    /// After provisioning, mark the VHDX's log as not replayed (a non-zero LogGuid in the
    /// current header, its CRC-32C fixed): what a VHDX holds after its host lost power with
    /// writes in flight. Windows must replay the log before booting from it.
    #[serde(default)]
    pub vhdx_dirty_log: bool,
}

/// Native-boot containers a recipe can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerFormat {
    Vhd,
    Vhdx,
}

/// UFD layouts a recipe can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Bios,
    Uefi,
    /// `--firmware both`: the UEFI layout whose NTFS partition is active and BIOS-bootable too.
    Both,
}

impl ImageRecipe {
    /// The layout: the explicit one, else the one the machine's firmware boots.
    pub fn layout_for(&self, firmware: crate::machine::FirmwareKind) -> Layout {
        self.layout.unwrap_or(match firmware {
            crate::machine::FirmwareKind::Seabios => Layout::Bios,
            crate::machine::FirmwareKind::Ovmf => Layout::Uefi,
        })
    }
}

/// A device that surfaces late: the UFD is unplugged at the probe's hand-off and plugged in
/// again after `delay_s` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Late {
    pub delay_s: f64,
}

/// What the run must show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `boots`, `bugcheck 0x7B`, `refused`.
    #[serde(default)]
    pub outcome: Option<BootOutcome>,
    /// The last boot-path hop reached (`ufd_bootpath::HOPS`).
    #[serde(default)]
    pub last_hop: Option<String>,
    /// Rule ID → `pass` | `fail` | `warn` | `not-judged`.
    #[serde(default)]
    pub verdicts: BTreeMap<String, String>,
    /// Upper bound for bytes written to the UFD during the run.
    #[serde(default)]
    pub max_written_bytes: Option<u64>,
    /// The machine is expected to hang before any boot manager runs (what a PC does with MBR
    /// code that never chains: the firmware's "Booting from Hard Disk..." and a cursor): the
    /// deadline (`timeout_s`, keep it short) is then the expected end of the run, and any
    /// other end is a mismatch.
    #[serde(default)]
    pub hangs: bool,
}

/// One scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Defaults to the file stem.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    pub image: ImageRecipe,
    pub machine: Machine,
    #[serde(default)]
    pub late: Option<Late>,
    #[serde(default)]
    pub expect: Expect,
}

fn default_timeout() -> u64 {
    180
}

const OUTCOMES: &[&str] = &["pass", "fail", "warn", "not-judged"];

impl Scenario {
    /// Parse TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Scenario> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| {
            Error::config(format!("{}: {}", origin.display(), e.to_string().trim()))
        })?;
        if s.image.layout.is_none() {
            s.image.layout = Some(s.image.layout_for(s.machine.firmware));
        }
        if s.name.is_empty() {
            s.name = origin
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        s.validate()
            .map_err(|e| Error::config(format!("{}: {e}", origin.display())))?;
        Ok(s)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        self.machine.validate().map_err(|e| e.to_string())?;
        if self.image.vhdx_dirty_log && self.image.format != Some(ContainerFormat::Vhdx) {
            return Err("image.vhdx_dirty_log needs image.format = \"vhdx\"".into());
        }
        for (rule, outcome) in &self.expect.verdicts {
            if ufd_formats::policy::rule(rule).is_none() {
                return Err(format!(
                    "expect.verdicts: unknown rule {rule:?} (see shared/design/policy-rules.md)"
                ));
            }
            if !OUTCOMES.contains(&normalize(outcome).as_str()) {
                return Err(format!(
                    "expect.verdicts.{rule} = {outcome:?}: one of {OUTCOMES:?}"
                ));
            }
        }
        if let Some(BootOutcome::Other(o)) = &self.expect.outcome {
            return Err(format!(
                "expect.outcome = {o:?}: boots, bugcheck 0xNN or refused"
            ));
        }
        if let Some(l) = &self.late {
            if !(0.0..=600.0).contains(&l.delay_s) {
                return Err(format!("late.delay_s = {}: 0..=600", l.delay_s));
            }
            if self.timeout_s as f64 <= l.delay_s {
                return Err(format!(
                    "timeout_s = {} does not exceed late.delay_s",
                    self.timeout_s
                ));
            }
        }
        if self.timeout_s == 0 {
            return Err("timeout_s = 0".into());
        }
        Ok(())
    }

    /// Compare a run with the expectations; empty = passed.
    pub fn mismatches(&self, out: &RunOutput) -> Vec<String> {
        let mut m = Vec::new();
        let s = out.summary();
        let e = &self.expect;
        if let Some(want) = &e.outcome {
            match &s.outcome {
                Some(got) if got == want => {}
                Some(got) => m.push(format!("outcome: expected {want}, got {got}")),
                None => m.push(format!(
                    "outcome: expected {want}, but no `done` record (run ended: {})",
                    end_text(&out.end)
                )),
            }
        }
        if let Some(want) = &e.last_hop {
            match s.last_hop() {
                Some(h) if &h.step == want => {}
                Some(h) => m.push(format!(
                    "last hop: expected {want}, got {} ({})",
                    h.step, h.status
                )),
                None => m.push(format!("last hop: expected {want}, got no hop record")),
            }
        }
        for (rule, want) in &e.verdicts {
            let want = normalize(want);
            match s.verdict(rule) {
                Some(v) if v.outcome == want => {}
                Some(v) => m.push(format!(
                    "{rule}: expected {want}, got {}{}",
                    v.outcome,
                    v.evidence
                        .as_deref()
                        .map(|x| format!(" ({x})"))
                        .unwrap_or_default()
                )),
                None => m.push(format!("{rule}: expected {want}, no verdict")),
            }
        }
        if let Some(max) = e.max_written_bytes {
            if out.ufd_io.wr_bytes > max {
                m.push(format!(
                    "wrote {} bytes to the UFD, more than {max}",
                    out.ufd_io.wr_bytes
                ));
            }
        }
        if let Some(h) = &out.hotplug {
            if let Some(err) = &h.error {
                m.push(format!("late surfacing: {err}"));
            } else if h.added_ms.is_none() && !matches!(s.outcome, Some(BootOutcome::Bugcheck(_))) {
                // A guest that stopped with 0x7B before the delay ran out ended the run before
                // the device was due back: that is the late-surfacing scenario working, not a
                // harness failure. Any other run must have seen the device return.
                m.push("late surfacing: the device was never re-added".into());
            }
        } else if self.late.is_some() {
            m.push("late surfacing: no `handoff` record, the device was never unplugged".into());
        }
        if s.done.is_none() {
            if let Some(last) = out.qemu_stderr.lines().rev().find(|l| !l.trim().is_empty()) {
                m.push(format!("qemu stderr: {}", last.trim()));
            }
        }
        match (&out.end, e.hangs) {
            (RunEnd::Deadline, true) => {}
            (end, true) => m.push(format!(
                "expected the machine to hang until the deadline, but the run ended: {}",
                end_text(end)
            )),
            (RunEnd::Deadline | RunEnd::KvmInternalError | RunEnd::HarnessError(_), false) => {
                m.push(format!("run ended: {}", end_text(&out.end)))
            }
            _ => {}
        }
        m
    }
}

/// Human text of a [`RunEnd`].
pub fn end_text(end: &RunEnd) -> String {
    match end {
        RunEnd::Done => "done".into(),
        RunEnd::StopEvent => "stop event".into(),
        RunEnd::GuestStopped(r) => format!("guest stopped ({r})"),
        RunEnd::Exited(c) => format!(
            "QEMU exited ({})",
            c.map_or("signal".into(), |c| c.to_string())
        ),
        RunEnd::BootCode(m) => format!("boot code stopped: {m:?}"),
        RunEnd::Deadline => "deadline passed, QEMU killed".into(),
        RunEnd::KvmInternalError => "KVM internal error, QEMU killed".into(),
        RunEnd::HarnessError(e) => format!("harness error: {e}"),
    }
}

/// A scenario file path or a directory of `*.toml` (sorted by name; `README*` ignored).
pub fn load(path: &Path) -> Result<Vec<Scenario>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, "list scenarios", e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(Error::config(format!(
                "{}: no *.toml scenario files",
                path.display()
            )));
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| Error::io(&f, "read the scenario", e))?;
        let s = Scenario::from_toml(&text, &f)?;
        if out.iter().any(|o: &Scenario| o.name == s.name) {
            return Err(Error::config(format!(
                "{}: scenario name {:?} used twice",
                f.display(),
                s.name
            )));
        }
        out.push(s);
    }
    Ok(out)
}

/// Builds the image of a recipe (the CLI wires this to the provisioner).
pub type ImageProvider<'a> = dyn Fn(&ImageRecipe) -> Result<PathBuf> + Sync + 'a;

/// How to run scenarios.
pub struct RunOptions<'a> {
    /// One image for every scenario (`--image`); else [`Self::image_provider`].
    pub image: Option<PathBuf>,
    pub image_provider: Option<&'a ImageProvider<'a>>,
    /// `--firmware FILE` (OVMF scenarios).
    pub firmware: Option<PathBuf>,
    /// `--bios-firmware FILE` (SeaBIOS scenarios).
    pub bios_firmware: Option<PathBuf>,
    /// An optional separate probe ESP disk (see `RunPaths::probe_disk`).
    pub probe_disk: Option<PathBuf>,
    pub accel: Option<AccelChoice>,
    /// Artifacts of failing scenarios go to `<dir>/<scenario>/`.
    pub artifacts: Option<PathBuf>,
    /// Scenarios run in parallel (each VM also takes a process-wide slot).
    pub jobs: usize,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            image: None,
            image_provider: None,
            firmware: None,
            bios_firmware: None,
            probe_disk: None,
            accel: None,
            artifacts: None,
            jobs: 2,
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub passed: bool,
    pub mismatches: Vec<String>,
    /// A harness or image error (then `run` is `None`).
    pub error: Option<String>,
    pub outcome: Option<BootOutcome>,
    pub last_hop: Option<String>,
    /// Bytes written to the UFD during the run (the seed's baseline write profile).
    pub written_bytes: Option<u64>,
    pub duration_ms: u64,
    pub run: Option<RunOutput>,
}

/// Boot one scenario and judge it.
pub fn run_scenario(s: &Scenario, opts: &RunOptions) -> ScenarioResult {
    let start = std::time::Instant::now();
    let fail = |e: String| ScenarioResult {
        name: s.name.clone(),
        passed: false,
        mismatches: Vec::new(),
        error: Some(e),
        outcome: None,
        last_hop: None,
        written_bytes: None,
        duration_ms: start.elapsed().as_millis() as u64,
        run: None,
    };
    let image = match (&opts.image, opts.image_provider) {
        (Some(i), _) => i.clone(),
        (None, Some(p)) => match p(&s.image) {
            Ok(i) => i,
            Err(e) => return fail(format!("image {}: {e}", s.image.synthetic)),
        },
        (None, None) => return fail("no image: pass --image IMAGE".into()),
    };
    let spec = RunSpec {
        name: s.name.clone(),
        machine: s.machine.clone(),
        image,
        firmware: opts.firmware.clone(),
        bios_firmware: opts.bios_firmware.clone(),
        accel: opts.accel,
        timeout: Duration::from_secs(s.timeout_s),
        late: s.late.as_ref().map(|l| Duration::from_secs_f64(l.delay_s)),
        artifacts: opts.artifacts.clone(),
        probe_disk: opts.probe_disk.clone(),
        stop_on_event: None,
    };
    match run::run(&spec, &|out| !s.mismatches(out).is_empty()) {
        Ok(out) => {
            let mismatches = s.mismatches(&out);
            let sum = out.summary();
            ScenarioResult {
                name: s.name.clone(),
                passed: mismatches.is_empty(),
                mismatches,
                error: None,
                outcome: sum.outcome.clone(),
                last_hop: sum.last_hop().map(|h| h.step.clone()),
                written_bytes: Some(out.ufd_io.wr_bytes),
                duration_ms: start.elapsed().as_millis() as u64,
                run: Some(out),
            }
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Run scenarios with at most `opts.jobs` at a time; results in input order.
pub fn run_all(scenarios: &[Scenario], opts: &RunOptions) -> Vec<ScenarioResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ScenarioResult>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|sc| {
        for _ in 0..opts.jobs.clamp(1, scenarios.len().max(1)) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(s) = scenarios.get(i) else { break };
                let r = run_scenario(s, opts);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .zip(scenarios)
        .map(|(r, s)| {
            r.unwrap_or_else(|| ScenarioResult {
                name: s.name.clone(),
                passed: false,
                mismatches: Vec::new(),
                error: Some("worker thread died".into()),
                outcome: None,
                last_hop: None,
                written_bytes: None,
                duration_ms: 0,
                run: None,
            })
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML (one `<testsuite>`, one `<testcase>` per scenario).
pub fn junit_xml(suite: &str, results: &[ScenarioResult]) -> String {
    let failures = results
        .iter()
        .filter(|r| !r.passed && r.error.is_none())
        .count();
    let errors = results.iter().filter(|r| r.error.is_some()).count();
    let time: f64 = results.iter().map(|r| r.duration_ms as f64 / 1000.0).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x += &format!(
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n",
        xml_escape(suite),
        results.len()
    );
    for r in results {
        x += &format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
            xml_escape(suite),
            xml_escape(&r.name),
            r.duration_ms as f64 / 1000.0
        );
        if let Some(e) = &r.error {
            x += &format!("    <error message=\"{}\"/>\n", xml_escape(e));
        } else if !r.passed {
            x += &format!(
                "    <failure message=\"{}\">{}</failure>\n",
                xml_escape(r.mismatches.first().map(String::as_str).unwrap_or("failed")),
                xml_escape(&r.mismatches.join("\n"))
            );
        }
        let mut out = format!(
            "outcome: {}\nlast hop: {}\nbytes written to the UFD: {}\n",
            r.outcome.as_ref().map_or("-".into(), |o| o.to_string()),
            r.last_hop.as_deref().unwrap_or("-"),
            r.written_bytes.map_or("-".into(), |b| b.to_string())
        );
        if let Some(a) = r.run.as_ref().and_then(|o| o.artifacts.as_ref()) {
            out += &format!("artifacts: {}\n", a.display());
        }
        x += &format!("    <system-out>{}</system-out>\n", xml_escape(&out));
        x += "  </testcase>\n";
    }
    x += "</testsuite>\n";
    x
}

/// A plain-text results table.
pub fn results_table(results: &[ScenarioResult]) -> String {
    let rows: Vec<[String; 6]> = results
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                if r.error.is_some() {
                    "ERROR"
                } else if r.passed {
                    "ok"
                } else {
                    "FAIL"
                }
                .into(),
                r.outcome.as_ref().map_or("-".into(), |o| o.to_string()),
                r.last_hop.clone().unwrap_or_else(|| "-".into()),
                r.written_bytes.map_or("-".into(), |b| b.to_string()),
                format!("{:.1}", r.duration_ms as f64 / 1000.0),
            ]
        })
        .collect();
    let head = [
        "scenario",
        "result",
        "outcome",
        "last hop",
        "UFD bytes written",
        "seconds",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s += "  ";
            }
            s += &format!("{c:<width$}", width = w[i]);
        }
        s.trim_end().to_string() + "\n"
    };
    let mut t = line(&head.map(String::from));
    for r in &rows {
        t += &line(r);
        for m in results
            .iter()
            .find(|x| x.name == r[0])
            .map(|x| x.mismatches.clone())
            .unwrap_or_default()
        {
            t += &format!("    - {m}\n");
        }
        if let Some(e) = results
            .iter()
            .find(|x| x.name == r[0])
            .and_then(|x| x.error.clone())
        {
            t += &format!("    - {e}\n");
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    t += &format!("{passed} of {} scenarios passed\n", results.len());
    t
}

/// `ufd run SCENARIO|DIR`: load the file or directory and run every scenario.
pub fn run_path(path: &Path, opts: &RunOptions) -> Result<Vec<ScenarioResult>> {
    let scenarios = load(path)?;
    Ok(run_all(&scenarios, opts))
}

/// `--json`: the results (with each run's records, hot-plug timings, block statistics).
pub fn results_json(results: &[ScenarioResult]) -> String {
    serde_json::to_string_pretty(results).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
