//! The typed machine description and its exact QEMU command line.
//!
//! A [`Machine`] is what a scenario file says about the host under test: firmware, machine type,
//! memory, CPU feature masks, accelerator, USB controllers, where the UFD sits (root port or
//! behind 1–2 nested `usb-hub`s, `removable=on|off`) and which other USB devices share a
//! controller with it. [`Machine::argv`] turns it, together with the per-run paths and the
//! resolved firmware/accelerator, into the argument vector for `qemu-system-x86_64`.
//!
//! Facts this relies on (all measured, `shared/reference/qemu.md`):
//! * `usb-hub` is full speed; plain `usb-ehci` refuses it at start (§2, "QEMU refuses"), so a
//!   hub needs xHCI or ICH9 EHCI with UHCI companions (then the hub and everything behind it run
//!   on the UHCI companion at 12 Mb/s).
//! * Hub ports are addressed `port=2`, `port=2.4`, storage `port=2.4.5` (§2 topology table).
//! * `-blockdev ...,node-name=` survives `device_del`, `-drive if=none` does not (§4).
//! * Booting from a stick behind a hub *with* `bootindex` drops Debian OVMF into the EFI
//!   shell (§2): [`Ufd::bootindex`] is only emitted when the UFD is on a root port.
//! * TCG exposes SVM and never VMX (§3); `-cpu host` under the test host's KVM aborts, so the
//!   CPU is always a named model with explicit `+/-` masks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Firmware family. The concrete files are resolved by [`crate::firmware`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FirmwareKind {
    /// UEFI: OVMF as read-only CODE pflash plus a per-run copy of VARS.
    #[default]
    Ovmf,
    /// Legacy BIOS: QEMU's built-in SeaBIOS (no `-bios`/pflash arguments).
    Seabios,
}

/// Accelerator policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AccelChoice {
    /// KVM if `/dev/kvm` opens and a short probe boot of the firmware under KVM does not hit a
    /// KVM internal error; TCG otherwise ([`crate::accel::detect`]).
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// The accelerator actually used for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Host CPU vendor, which decides whether "VT" means VMX (Intel) or SVM (AMD) under KVM.
/// TCG only ever exposes SVM (qemu.md §3), so under TCG VT is always SVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuVendor {
    Intel,
    Amd,
}

/// `-cpu` model and the feature masks the seed's HOST-NX / HOST-VT rules look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cpu {
    /// QEMU CPU model; `qemu64` runs under TCG and KVM alike (`host`/`max` abort under the
    /// test host's KVM without `-arch-capabilities`, qemu.md §3).
    pub model: String,
    /// Expose NX (`+nx`) or mask it (`-nx`): HOST-NX.
    pub nx: bool,
    /// Expose hardware virtualization (SVM under TCG / AMD KVM hosts, VMX on Intel KVM hosts)
    /// or mask both: HOST-VT.
    pub vt: bool,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu {
            model: "qemu64".into(),
            nx: true,
            vt: true,
        }
    }
}

impl Cpu {
    /// The `-cpu` value for this accelerator and host vendor.
    pub fn arg(&self, accel: Accel, host: CpuVendor) -> String {
        let nx = if self.nx { "+nx" } else { "-nx" };
        let vt = match (self.vt, accel, host) {
            (false, _, _) => "-vmx,-svm",
            (true, Accel::Tcg, _) | (true, Accel::Kvm, CpuVendor::Amd) => "+svm",
            (true, Accel::Kvm, CpuVendor::Intel) => "+vmx",
        };
        format!("{},{nx},{vt}", self.model)
    }
}

/// A USB host controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerKind {
    /// `qemu-xhci` (USB 3 + USB 2 root ports; usb-storage on a root port runs SuperSpeed).
    Xhci,
    /// Plain `usb-ehci` (USB 2.0 only; refuses full-speed devices such as `usb-hub`).
    Ehci,
    /// ICH9 EHCI (`ich9-usb-ehci1`, function 7) with three UHCI companions (functions 0–2),
    /// like the real ICH9 southbridge at 00:1d.
    Ich9,
    /// A UHCI controller alone (`ich9-usb-uhci1` without a master bus): a USB 1.1 host, the
    /// stick runs at 12 Mb/s.
    Uhci,
}

/// One controller of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    /// QEMU device id; the bus is `<id>.0`.
    pub id: String,
    pub kind: ControllerKind,
}

/// The UFD: a `usb-storage` device whose backend is the `-blockdev` node [`UFD_NODE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ufd {
    /// Controller id.
    pub controller: String,
    /// Root port (1-based, QEMU numbering).
    #[serde(default = "one")]
    pub port: u8,
    /// Nested `usb-hub`s between the root port and the stick: 0, 1 or 2.
    #[serde(default)]
    pub hubs: u8,
    /// `removable=on|off`: the SCSI INQUIRY RMB bit (UFD-NONREMOVABLE).
    #[serde(default)]
    pub removable: bool,
    /// Give the stick `bootindex=0` (only on a root port: behind a hub, Debian OVMF then
    /// boots the EFI shell, qemu.md §2).
    #[serde(default = "yes")]
    pub bootindex: bool,
}

fn one() -> u8 {
    1
}
fn yes() -> bool {
    true
}

/// Another USB device on some controller (a keyboard or tablet sharing the UFD's controller
/// makes TOPO-DEDICATED-CONTROLLER a recommendation miss).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbDevice {
    /// `usb-kbd`, `usb-tablet`, `usb-mouse`.
    pub driver: String,
    pub controller: String,
    pub port: u8,
}

/// USB part of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usb {
    pub controllers: Vec<Controller>,
    pub ufd: Ufd,
    #[serde(default)]
    pub devices: Vec<UsbDevice>,
}

/// Which port carries the guest probe's `UFDPROBE` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeChannel {
    /// The debugcon port 0xE9: no ANSI escapes, no firmware console noise (qemu.md §0.3).
    #[default]
    Debugcon,
    /// COM1.
    Serial,
}

/// A complete machine description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    #[serde(default)]
    pub firmware: FirmwareKind,
    /// `-machine` type (`q35`, `pc`).
    #[serde(default = "q35")]
    pub machine_type: String,
    #[serde(default = "mem")]
    pub memory_mib: u32,
    #[serde(default)]
    pub cpu: Cpu,
    #[serde(default)]
    pub accel: AccelChoice,
    pub usb: Usb,
    #[serde(default)]
    pub probe_channel: ProbeChannel,
}

fn q35() -> String {
    "q35".into()
}
fn mem() -> u32 {
    1024
}

/// QEMU device id of the UFD.
pub const UFD_ID: &str = "ufd0";
/// `-blockdev` node name of the UFD's format layer (what `usb-storage,drive=` names).
pub const UFD_NODE: &str = "ufd";
/// `-blockdev` node name of the UFD's file (protocol) layer.
pub const UFD_FILE_NODE: &str = "ufd-file";

/// Resolved firmware files for one run (see [`crate::firmware::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareFiles {
    /// SeaBIOS built into QEMU: no arguments.
    Builtin,
    /// CODE (read-only pflash) + the per-run VARS copy (read-write pflash).
    Pflash { code: PathBuf, vars: PathBuf },
    /// A single combined image the user gave, as a per-run read-write pflash copy (never
    /// `-bios`: ovmf-prebuilt under `-bios` writes `NvVars` onto writable FAT disks, qemu.md §7).
    PflashSingle { image: PathBuf },
    /// A legacy BIOS image the user gave (`-bios FILE`, e.g. a new SeaBIOS build).
    Bios { image: PathBuf },
}

impl FirmwareFiles {
    /// The QEMU arguments that load this firmware (used by every VM the harness starts:
    /// scenario runs and the accelerator probes).
    pub fn argv(&self) -> Vec<String> {
        match self {
            FirmwareFiles::Builtin => Vec::new(),
            FirmwareFiles::Pflash { code, vars } => vec![
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    code.display()
                ),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ],
            FirmwareFiles::PflashSingle { image } => vec![
                "-drive".into(),
                format!("if=pflash,format=raw,unit=0,file={}", image.display()),
            ],
            FirmwareFiles::Bios { image } => vec!["-bios".into(), image.display().to_string()],
        }
    }
}

/// Per-run file locations that appear on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    pub qmp_socket: PathBuf,
    pub serial_log: PathBuf,
    pub debugcon_log: PathBuf,
    /// The UFD image QEMU opens read-write (a per-run qcow2 overlay over the source image).
    pub ufd_image: PathBuf,
    /// Format of `ufd_image` (`qcow2` for an overlay, `raw` for a plain copy).
    pub ufd_format: String,
    /// Optional read-only disk carrying the guest probe on an ESP, attached as virtio-blk with
    /// `bootindex=0` (the UFD then gets no bootindex): for images whose own layout OVMF cannot
    /// boot (the seed's BIOS-style NTFS). UEFI-layout images boot the probe from the stick.
    pub probe_disk: Option<PathBuf>,
}

impl RunPaths {
    /// Paths inside `dir` with the harness's fixed file names.
    pub fn in_dir(dir: &Path) -> RunPaths {
        RunPaths {
            qmp_socket: dir.join("qmp.sock"),
            serial_log: dir.join("serial.log"),
            debugcon_log: dir.join("debugcon.log"),
            ufd_image: dir.join("ufd.qcow2"),
            ufd_format: "qcow2".into(),
            probe_disk: None,
        }
    }
}

impl Controller {
    /// The USB bus name devices attach to.
    pub fn bus(&self) -> String {
        format!("{}.0", self.id)
    }
}

impl Machine {
    /// Check the description against what QEMU accepts and what the seed's topologies mean.
    pub fn validate(&self) -> Result<()> {
        let usb = &self.usb;
        if usb.controllers.is_empty() {
            return Err(Error::config("machine.usb.controllers is empty"));
        }
        for (i, c) in usb.controllers.iter().enumerate() {
            if c.id.is_empty()
                || !c
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(Error::config(format!(
                    "machine.usb.controllers[{i}].id {:?}: use letters, digits, '-' or '_'",
                    c.id
                )));
            }
            if usb.controllers[..i].iter().any(|o| o.id == c.id) {
                return Err(Error::config(format!(
                    "controller id {:?} used twice",
                    c.id
                )));
            }
        }
        if usb
            .controllers
            .iter()
            .filter(|c| c.kind == ControllerKind::Ich9)
            .count()
            > 2
        {
            return Err(Error::config(
                "at most two ich9 controllers (PCI slots 1d and 1a)",
            ));
        }
        let ufd_ctrl = self.controller(&usb.ufd.controller)?;
        if usb.ufd.hubs > 2 {
            return Err(Error::config(format!(
                "machine.usb.ufd.hubs = {}: 0, 1 or 2 nested hubs are supported",
                usb.ufd.hubs
            )));
        }
        if usb.ufd.hubs > 0 && ufd_ctrl.kind == ControllerKind::Ehci {
            return Err(Error::config(
                "usb-hub is a full-speed device and plain usb-ehci refuses it (QEMU: speed mismatch); use kind = \"ich9\" (UHCI companions) or \"xhci\"",
            ));
        }
        let max_port = |k: ControllerKind| match k {
            ControllerKind::Xhci => 8,
            ControllerKind::Ehci | ControllerKind::Ich9 => 6,
            ControllerKind::Uhci => 2,
        };
        if usb.ufd.port == 0 || usb.ufd.port > max_port(ufd_ctrl.kind) {
            return Err(Error::config(format!(
                "machine.usb.ufd.port = {} is not a root port of {:?} (1..={})",
                usb.ufd.port,
                ufd_ctrl.kind,
                max_port(ufd_ctrl.kind)
            )));
        }
        for (i, d) in usb.devices.iter().enumerate() {
            let c = self.controller(&d.controller)?;
            if d.port == 0 || d.port > max_port(c.kind) {
                return Err(Error::config(format!(
                    "machine.usb.devices[{i}].port = {} is not a root port of {:?}",
                    d.port, c.kind
                )));
            }
            if d.controller == usb.ufd.controller && d.port == usb.ufd.port {
                return Err(Error::config(format!(
                    "machine.usb.devices[{i}] uses the UFD's root port {}",
                    d.port
                )));
            }
            if !["usb-kbd", "usb-tablet", "usb-mouse"].contains(&d.driver.as_str()) {
                return Err(Error::config(format!(
                    "machine.usb.devices[{i}].driver {:?}: usb-kbd, usb-tablet or usb-mouse",
                    d.driver
                )));
            }
        }
        if self.memory_mib < 128 {
            return Err(Error::config("machine.memory_mib below 128"));
        }
        Ok(())
    }

    fn controller(&self, id: &str) -> Result<&Controller> {
        self.usb
            .controllers
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::config(format!("no USB controller with id {id:?}")))
    }

    /// The QEMU `port=` path of the stick: `P`, `P.4`, `P.4.5` (qemu.md §2).
    pub fn ufd_port_path(&self) -> String {
        let u = &self.usb.ufd;
        match u.hubs {
            0 => u.port.to_string(),
            1 => format!("{}.3", u.port),
            _ => format!("{}.4.5", u.port),
        }
    }

    /// The `device_add` arguments that re-create the UFD exactly as the command line did
    /// (same id, drive node, bus and port), for the hot-unplug/replug of late surfacing.
    pub fn ufd_device_add_args(&self) -> Result<serde_json::Value> {
        let c = self.controller(&self.usb.ufd.controller)?;
        Ok(serde_json::json!({
            "driver": "usb-storage",
            "id": UFD_ID,
            "drive": UFD_NODE,
            "bus": c.bus(),
            "port": self.ufd_port_path(),
            "removable": self.usb.ufd.removable,
        }))
    }

    /// The exact QEMU argument vector (without the program name).
    pub fn argv(
        &self,
        paths: &RunPaths,
        firmware: &FirmwareFiles,
        accel: Accel,
        host: CpuVendor,
    ) -> Result<Vec<String>> {
        self.validate()?;
        let mut a: Vec<String> = Vec::new();
        let mut push = |args: &[&str]| a.extend(args.iter().map(|s| s.to_string()));
        push(&["-nodefaults", "-no-user-config"]);
        push(&[
            "-machine",
            &format!("{},accel={}", self.machine_type, accel.as_str()),
        ]);
        push(&["-cpu", &self.cpu.arg(accel, host)]);
        push(&["-m", &self.memory_mib.to_string()]);
        push(&["-smp", "1"]);
        // A VGA device so that `screendump` has a surface; no window.
        push(&["-vga", "std", "-display", "none"]);
        // A reset becomes a shutdown, and a shutdown only stops the VM, so that the harness can
        // still read block statistics and take a screendump after the guest powered off.
        push(&["-monitor", "none", "-no-reboot", "-no-shutdown"]);
        push(&["-serial", &format!("file:{}", paths.serial_log.display())]);
        push(&[
            "-debugcon",
            &format!("file:{}", paths.debugcon_log.display()),
        ]);
        push(&[
            "-qmp",
            &format!("unix:{},server=on,wait=off", paths.qmp_socket.display()),
        ]);
        push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        let fw = firmware.argv();
        push(&fw.iter().map(String::as_str).collect::<Vec<_>>());
        push(&[
            "-blockdev",
            &format!(
                "driver=file,filename={},node-name={UFD_FILE_NODE}",
                paths.ufd_image.display()
            ),
        ]);
        push(&[
            "-blockdev",
            &format!(
                "driver={},file={UFD_FILE_NODE},node-name={UFD_NODE}",
                paths.ufd_format
            ),
        ]);
        if let Some(p) = &paths.probe_disk {
            push(&[
                "-blockdev",
                &format!(
                    "driver=file,filename={},node-name=probe-file,read-only=on",
                    p.display()
                ),
            ]);
            push(&[
                "-blockdev",
                "driver=raw,file=probe-file,node-name=probe,read-only=on",
            ]);
            push(&[
                "-device",
                "virtio-blk-pci,drive=probe,id=probe0,addr=03,bootindex=0",
            ]);
        }
        let mut slot = 0x04u8;
        let mut ich9_slots = [0x1du8, 0x1a].into_iter();
        for c in &self.usb.controllers {
            match c.kind {
                ControllerKind::Xhci => {
                    push(&["-device", &format!("qemu-xhci,id={},addr={slot:02x}", c.id)]);
                    slot += 1;
                }
                ControllerKind::Ehci => {
                    push(&["-device", &format!("usb-ehci,id={},addr={slot:02x}", c.id)]);
                    slot += 1;
                }
                ControllerKind::Uhci => {
                    push(&[
                        "-device",
                        &format!("ich9-usb-uhci1,id={},addr={slot:02x}", c.id),
                    ]);
                    slot += 1;
                }
                ControllerKind::Ich9 => {
                    let s = ich9_slots.next().unwrap_or(0x1a);
                    push(&[
                        "-device",
                        &format!("ich9-usb-ehci1,id={},addr={s:02x}.7,multifunction=on", c.id),
                    ]);
                    for (n, first) in [(1, 0), (2, 2), (3, 4)] {
                        let mf = if n == 1 { ",multifunction=on" } else { "" };
                        push(&[
                            "-device",
                            &format!(
                                "ich9-usb-uhci{n},id={}-uhci{n},masterbus={}.0,firstport={first},addr={s:02x}.{}{mf}",
                                c.id,
                                c.id,
                                n - 1
                            ),
                        ]);
                    }
                }
            }
        }
        let ufd = &self.usb.ufd;
        let bus = self.controller(&ufd.controller)?.bus();
        if ufd.hubs >= 1 {
            push(&[
                "-device",
                &format!("usb-hub,id=hub1,bus={bus},port={}", ufd.port),
            ]);
        }
        if ufd.hubs >= 2 {
            push(&[
                "-device",
                &format!("usb-hub,id=hub2,bus={bus},port={}.4", ufd.port),
            ]);
        }
        let boot = if ufd.bootindex && ufd.hubs == 0 && paths.probe_disk.is_none() {
            ",bootindex=0"
        } else {
            ""
        };
        push(&[
            "-device",
            &format!(
                "usb-storage,id={UFD_ID},drive={UFD_NODE},bus={bus},port={},removable={}{boot}",
                self.ufd_port_path(),
                if ufd.removable { "on" } else { "off" }
            ),
        ]);
        for (i, d) in self.usb.devices.iter().enumerate() {
            let bus = self.controller(&d.controller)?.bus();
            push(&[
                "-device",
                &format!("{},id=usbdev{i},bus={bus},port={}", d.driver, d.port),
            ]);
        }
        Ok(a)
    }
}

/// Render an argv as one shell-quoted command line (the `qemu.cmdline` artifact).
pub fn shell_line(program: &str, argv: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@%".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut out = quote(program);
    for a in argv {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out
}
