//! Synthetic sysfs trees for tests and demos (`ufd check-device --sysfs-root DIR`), generated
//! from a compact description so no symlink ever has to live in git.
//!
//! The layouts copy what Linux shows (see [`crate::sysfs`] for the ABI documents): the
//! `/sys/block/X` link into `/sys/devices`, the SCSI `device` link, the nesting of USB devices
//! inside their hub's directory, attribute formats as `drivers/usb/core/sysfs.c` prints them
//! (`version` as `"%2x.%02x"` → `" 2.00"`, classes as `"%02x"`, SCSI strings space-padded to 8/16/4
//! characters), PCI `class` as `0x0c0320`. Values (vendor IDs, product strings) are those of
//! common real parts: an ICH9 EHCI (8086:293a) with UHCI companions, an Intel xHCI (8086:a12f),
//! a SanDisk Cruzer Blade (0781:5567), a Genesys Logic hub (05e3:0608), a Logitech keyboard
//! (046d:c31c). They are synthetic trees, not recordings: no real capture was available here.

use std::fs;
use std::io;
use std::path::Path;

/// One entry of a tree, relative to its root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(String),
    /// File and its content (a trailing newline is added, as sysfs does).
    File(String, String),
    /// Symlink and its (relative) target.
    Link(String, String),
}

/// A tree of files, directories and relative symlinks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

impl Tree {
    pub fn dir(&mut self, p: impl Into<String>) -> &mut Self {
        self.entries.push(Entry::Dir(p.into()));
        self
    }
    pub fn file(&mut self, p: impl Into<String>, content: impl Into<String>) -> &mut Self {
        self.entries.push(Entry::File(p.into(), content.into()));
        self
    }
    pub fn link(&mut self, p: impl Into<String>, target: impl Into<String>) -> &mut Self {
        self.entries.push(Entry::Link(p.into(), target.into()));
        self
    }
    /// Write several attribute files into one directory.
    pub fn attrs(&mut self, dir: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.dir(dir);
        for (k, v) in attrs {
            self.file(format!("{dir}/{k}"), *v);
        }
        self
    }

    /// Create the tree under `root`.
    pub fn materialize(&self, root: &Path) -> io::Result<()> {
        for e in &self.entries {
            match e {
                Entry::Dir(p) => fs::create_dir_all(root.join(p))?,
                Entry::File(p, c) => {
                    let p = root.join(p);
                    if let Some(d) = p.parent() {
                        fs::create_dir_all(d)?;
                    }
                    fs::write(p, format!("{c}\n"))?;
                }
                Entry::Link(p, t) => {
                    let p = root.join(p);
                    if let Some(d) = p.parent() {
                        fs::create_dir_all(d)?;
                    }
                    // The same hub may be described twice (on the UFD's path and another's).
                    match fs::read_link(&p) {
                        Ok(existing) if existing == Path::new(t) => {}
                        _ => std::os::unix::fs::symlink(t, p)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// A sorted text listing (`f path = value`, `l path -> target`, `d path`), for review.
    pub fn listing(&self) -> String {
        let mut lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| match e {
                Entry::Dir(p) => format!("d {p}"),
                Entry::File(p, c) => format!("f {p} = {c:?}"),
                Entry::Link(p, t) => format!("l {p} -> {t}"),
            })
            .collect();
        lines.sort();
        lines.dedup();
        lines.join("\n") + "\n"
    }
}

/// A USB host controller on PCI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeController {
    /// PCI address, `0000:00:1d.7`.
    pub pci: String,
    /// PCI `class`, `0x0c0320` for EHCI.
    pub class: u32,
    /// PCI vendor:device.
    pub vendor: u16,
    pub device: u16,
    /// Root hubs: (bus number, `version`, `speed`).
    pub root_hubs: Vec<(u32, &'static str, &'static str)>,
}

impl FakeController {
    /// ICH9 EHCI #1 (8086:293a) at 00:1d.7, bus 2.
    pub fn ehci() -> Self {
        FakeController {
            pci: "0000:00:1d.7".into(),
            class: 0x0c0320,
            vendor: 0x8086,
            device: 0x293a,
            root_hubs: vec![(2, " 2.00", "480")],
        }
    }
    /// ICH9 UHCI #1 (8086:2934) at 00:1d.0, bus 3: the EHCI's companion.
    pub fn uhci_companion() -> Self {
        FakeController {
            pci: "0000:00:1d.0".into(),
            class: 0x0c0300,
            vendor: 0x8086,
            device: 0x2934,
            root_hubs: vec![(3, " 1.10", "12")],
        }
    }
    /// Intel 100-series xHCI (8086:a12f) at 00:14.0: bus 1 USB 2, bus 2 USB 3.
    pub fn xhci() -> Self {
        FakeController {
            pci: "0000:00:14.0".into(),
            class: 0x0c0330,
            vendor: 0x8086,
            device: 0xa12f,
            root_hubs: vec![(1, " 2.00", "480"), (2, " 3.00", "5000")],
        }
    }
    fn dir(&self) -> String {
        format!("sys/devices/pci0000:00/{}", self.pci)
    }
}

/// A USB device other than the UFD (a keyboard, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUsbDevice {
    /// Index into [`FakeUsbDisk::controllers`].
    pub controller: usize,
    /// Index into that controller's root hubs.
    pub root_hub: usize,
    /// Port path: `[4]` = root port 4; `[1, 2]` = port 2 of a hub on root port 1.
    pub ports: Vec<u32>,
    pub id: (u16, u16),
    pub product: &'static str,
    /// bDeviceClass (`09` makes it a hub).
    pub class: u8,
    /// Interface class of interface 0.
    pub interface_class: u8,
}

impl FakeUsbDevice {
    /// Logitech USB keyboard (046d:c31c), HID.
    pub fn keyboard(controller: usize, root_hub: usize, ports: Vec<u32>) -> Self {
        FakeUsbDevice {
            controller,
            root_hub,
            ports,
            id: (0x046d, 0xc31c),
            product: "USB Keyboard",
            class: 0x00,
            interface_class: 0x03,
        }
    }
    /// Genesys Logic USB 2.0 hub (05e3:0608).
    pub fn hub(controller: usize, root_hub: usize, ports: Vec<u32>) -> Self {
        FakeUsbDevice {
            controller,
            root_hub,
            ports,
            id: (0x05e3, 0x0608),
            product: "USB2.0 Hub",
            class: 0x09,
            interface_class: 0x09,
        }
    }
}

/// A USB disk and the bus around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUsbDisk {
    /// Kernel name, `sdb`.
    pub name: String,
    pub major_minor: (u32, u32),
    pub scsi_host: u32,
    pub sectors: u64,
    pub removable: bool,
    pub ro: bool,
    pub vendor: &'static str,
    pub model: &'static str,
    pub rev: &'static str,
    pub id: (u16, u16),
    pub manufacturer: &'static str,
    pub product: &'static str,
    pub serial: &'static str,
    pub speed: &'static str,
    pub version: &'static str,
    pub interface: (u8, u8, u8),
    pub controllers: Vec<FakeController>,
    /// Index into `controllers` and its root hubs.
    pub controller: usize,
    pub root_hub: usize,
    /// Port path (`[1]` root port 1; `[1, 3]` behind a hub). Hubs on the way are generated.
    pub ports: Vec<u32>,
    pub others: Vec<FakeUsbDevice>,
    /// Partitions: (start, size) in sectors.
    pub partitions: Vec<(u64, u64)>,
}

/// 16 GB as sold: 31,266,816 sectors (16,008,609,792 bytes) — a real 16 GB Cruzer Blade's size.
pub const SECTORS_16GB: u64 = 31_266_816;

impl FakeUsbDisk {
    /// The conformant UFD: fixed media (RMB 0), 480 Mb/s, class 08/06/50, alone on root port 1
    /// of a dedicated EHCI, 16 GB.
    pub fn conformant() -> Self {
        FakeUsbDisk {
            name: "sdb".into(),
            major_minor: (8, 16),
            scsi_host: 6,
            sectors: SECTORS_16GB,
            removable: false,
            ro: false,
            vendor: "SanDisk",
            model: "Cruzer Blade",
            rev: "1.00",
            id: (0x0781, 0x5567),
            manufacturer: "SanDisk",
            product: "Cruzer Blade",
            serial: "4C530001230518115442",
            speed: "480",
            version: " 2.00",
            interface: (0x08, 0x06, 0x50),
            controllers: vec![FakeController::ehci()],
            controller: 0,
            root_hub: 0,
            ports: vec![1],
            others: vec![],
            partitions: vec![(2048, SECTORS_16GB - 2048)],
        }
    }

    fn bus(&self, c: usize, r: usize) -> u32 {
        self.controllers[c].root_hubs[r].0
    }

    fn device_dir(&self, c: usize, r: usize, ports: &[u32]) -> String {
        let bus = self.bus(c, r);
        let mut d = format!("{}/usb{bus}", self.controllers[c].dir());
        for i in 1..=ports.len() {
            let p: Vec<String> = ports[..i].iter().map(u32::to_string).collect();
            d.push_str(&format!("/{bus}-{}", p.join(".")));
        }
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn usb_device(
        &self,
        t: &mut Tree,
        dir: &str,
        bus: u32,
        ports: &[u32],
        id: (u16, u16),
        product: &str,
        class: u8,
        speed: &str,
        version: &str,
    ) {
        let devpath: Vec<String> = ports.iter().map(u32::to_string).collect();
        t.attrs(
            dir,
            &[
                ("idVendor", &format!("{:04x}", id.0)),
                ("idProduct", &format!("{:04x}", id.1)),
                ("product", product),
                ("bDeviceClass", &format!("{class:02x}")),
                ("busnum", &bus.to_string()),
                ("devnum", &(ports.len() + 1).to_string()),
                ("devpath", &devpath.join(".")),
                ("speed", speed),
                ("version", version),
                ("maxchild", if class == 0x09 { "4" } else { "0" }),
            ],
        );
        // Real sysfs directories link back up the tree; walks must not follow these.
        let up = "../".repeat(dir.split('/').count() - 1);
        t.dir("sys/bus/usb");
        t.link(format!("{dir}/subsystem"), format!("{up}bus/usb"));
    }

    /// The tree: controllers, root hubs, hubs, the disk, the other devices, `/sys/block`,
    /// `/sys/dev/block`.
    pub fn tree(&self) -> Tree {
        let mut t = Tree::default();
        for c in &self.controllers {
            let d = c.dir();
            t.attrs(
                &d,
                &[
                    ("class", &format!("{:#08x}", c.class)),
                    ("vendor", &format!("{:#06x}", c.vendor)),
                    ("device", &format!("{:#06x}", c.device)),
                ],
            );
            for (bus, version, speed) in &c.root_hubs {
                t.attrs(
                    &format!("{d}/usb{bus}"),
                    &[
                        ("idVendor", "1d6b"),
                        (
                            "idProduct",
                            if version.trim().starts_with('3') {
                                "0003"
                            } else {
                                "0002"
                            },
                        ),
                        ("bDeviceClass", "09"),
                        ("busnum", &bus.to_string()),
                        ("devpath", "0"),
                        ("speed", speed),
                        ("version", version),
                        ("maxchild", "8"),
                        (
                            "product",
                            match c.class & 0xff {
                                0x00 => "UHCI Host Controller",
                                0x10 => "OHCI PCI host controller",
                                0x20 => "EHCI Host Controller",
                                _ => "xHCI Host Controller",
                            },
                        ),
                    ],
                );
            }
        }
        // Hubs on the UFD's path.
        let bus = self.bus(self.controller, self.root_hub);
        for i in 1..self.ports.len() {
            let p = &self.ports[..i];
            let dir = self.device_dir(self.controller, self.root_hub, p);
            self.usb_device(
                &mut t,
                &dir,
                bus,
                p,
                (0x05e3, 0x0608),
                "USB2.0 Hub",
                0x09,
                "480",
                " 2.00",
            );
        }
        // Other devices (and the hubs on their paths, unless already there).
        for o in &self.others {
            let obus = self.bus(o.controller, o.root_hub);
            for i in 1..o.ports.len() {
                let p = &o.ports[..i];
                let dir = self.device_dir(o.controller, o.root_hub, p);
                self.usb_device(
                    &mut t,
                    &dir,
                    obus,
                    p,
                    (0x05e3, 0x0608),
                    "USB2.0 Hub",
                    0x09,
                    "480",
                    " 2.00",
                );
            }
            let dir = self.device_dir(o.controller, o.root_hub, &o.ports);
            let speed = if o.class == 0x09 { "480" } else { "1.5" };
            let version = if o.class == 0x09 { " 2.00" } else { " 1.10" };
            self.usb_device(
                &mut t, &dir, obus, &o.ports, o.id, o.product, o.class, speed, version,
            );
            let leaf = dir.rsplit('/').next().unwrap_or_default().to_string();
            t.attrs(
                &format!("{dir}/{leaf}:1.0"),
                &[
                    ("bInterfaceClass", &format!("{:02x}", o.interface_class)),
                    ("bInterfaceSubClass", "01"),
                    ("bInterfaceProtocol", "01"),
                    ("bInterfaceNumber", "00"),
                ],
            );
        }
        // The UFD.
        let dev = self.device_dir(self.controller, self.root_hub, &self.ports);
        self.usb_device(
            &mut t,
            &dev,
            bus,
            &self.ports,
            self.id,
            self.product,
            0x00,
            self.speed,
            self.version,
        );
        t.file(format!("{dev}/manufacturer"), self.manufacturer);
        t.file(format!("{dev}/serial"), self.serial);
        let leaf = dev.rsplit('/').next().unwrap_or_default().to_string();
        let intf = format!("{dev}/{leaf}:1.0");
        t.attrs(
            &intf,
            &[
                ("bInterfaceClass", &format!("{:02x}", self.interface.0)),
                ("bInterfaceSubClass", &format!("{:02x}", self.interface.1)),
                ("bInterfaceProtocol", &format!("{:02x}", self.interface.2)),
                ("bInterfaceNumber", "00"),
            ],
        );
        let h = self.scsi_host;
        let scsi = format!("{intf}/host{h}/target{h}:0:0/{h}:0:0:0");
        t.attrs(
            &scsi,
            &[
                ("vendor", &format!("{:<8}", self.vendor)),
                ("model", &format!("{:<16}", self.model)),
                ("rev", &format!("{:<4}", self.rev)),
                ("type", "0"),
            ],
        );
        let block = format!("{scsi}/block/{}", self.name);
        scsi_disk_attrs(
            &mut t,
            &block,
            self.major_minor,
            self.sectors,
            self.removable,
            self.ro,
        );
        t.link(
            format!("{block}/device"),
            "../../../".to_string() + &format!("{h}:0:0:0"),
        );
        for (i, (start, size)) in self.partitions.iter().enumerate() {
            let pn = format!("{}{}", self.name, i + 1);
            t.attrs(
                &format!("{block}/{pn}"),
                &[
                    ("partition", &(i + 1).to_string()),
                    ("start", &start.to_string()),
                    ("size", &size.to_string()),
                    (
                        "dev",
                        &format!(
                            "{}:{}",
                            self.major_minor.0,
                            self.major_minor.1 + i as u32 + 1
                        ),
                    ),
                    ("ro", "0"),
                ],
            );
            t.dir(format!("{block}/{pn}/holders"));
        }
        let rel = block.trim_start_matches("sys/");
        t.link(format!("sys/block/{}", self.name), format!("../{rel}"));
        t.link(
            format!(
                "sys/dev/block/{}:{}",
                self.major_minor.0, self.major_minor.1
            ),
            format!("../../{rel}"),
        );
        t
    }
}

fn scsi_disk_attrs(
    t: &mut Tree,
    block: &str,
    mm: (u32, u32),
    sectors: u64,
    removable: bool,
    ro: bool,
) {
    t.attrs(
        block,
        &[
            ("size", &sectors.to_string()),
            ("removable", if removable { "1" } else { "0" }),
            ("ro", if ro { "1" } else { "0" }),
            ("dev", &format!("{}:{}", mm.0, mm.1)),
            ("capability", "51"),
        ],
    );
    t.dir(format!("{block}/holders"));
}

/// A SATA SSD on an AHCI controller (`sda`, 8:0, 500 GB, not removable).
pub fn sata_disk() -> Tree {
    let mut t = Tree::default();
    t.attrs(
        "sys/devices/pci0000:00/0000:00:1f.2",
        &[("class", "0x010601")],
    );
    let scsi = "sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0";
    t.attrs(
        scsi,
        &[
            ("vendor", "ATA     "),
            ("model", "Samsung SSD 860 "),
            ("rev", "4B6Q"),
            ("type", "0"),
        ],
    );
    let block = format!("{scsi}/block/sda");
    scsi_disk_attrs(&mut t, &block, (8, 0), 976_773_168, false, false);
    t.link(format!("{block}/device"), "../../../0:0:0:0");
    let rel = block.trim_start_matches("sys/");
    t.link("sys/block/sda", format!("../{rel}"));
    t.link("sys/dev/block/8:0", format!("../../{rel}"));
    t
}

/// An attached loop device (`loop0`, 7:0) backed by `backing_file`.
pub fn loop_device(sectors: u64, backing_file: &str) -> Tree {
    let mut t = Tree::default();
    let d = "sys/devices/virtual/block/loop0";
    t.attrs(
        d,
        &[
            ("size", &sectors.to_string()),
            ("removable", "0"),
            ("ro", "0"),
            ("dev", "7:0"),
        ],
    );
    t.dir(format!("{d}/holders"));
    t.attrs(
        &format!("{d}/loop"),
        &[
            ("backing_file", backing_file),
            ("offset", "0"),
            ("sizelimit", "0"),
            ("autoclear", "1"),
            ("partscan", "1"),
        ],
    );
    t.link("sys/block/loop0", "../devices/virtual/block/loop0");
    t.link("sys/dev/block/7:0", "../../devices/virtual/block/loop0");
    t
}

/// The named cases of `tests/fixtures/sysfs/` (one per rule outcome): the device name to check
/// and the tree.
pub fn case(name: &str) -> Option<(&'static str, Tree)> {
    let d = FakeUsbDisk::conformant;
    let usb = |u: FakeUsbDisk| Some(("sdb", u.tree()));
    match name {
        "conformant" => usb(d()),
        "removable-stick" => usb(FakeUsbDisk {
            removable: true,
            ..d()
        }),
        "usb3-xhci" => usb(FakeUsbDisk {
            controllers: vec![FakeController::xhci()],
            root_hub: 1,
            speed: "5000",
            version: " 3.00",
            id: (0x0781, 0x5581),
            product: "Ultra",
            model: "Ultra",
            ..d()
        }),
        "one-hub" => usb(FakeUsbDisk {
            ports: vec![1, 3],
            ..d()
        }),
        "two-hubs" => usb(FakeUsbDisk {
            ports: vec![1, 2, 3],
            ..d()
        }),
        "shared-controller" => usb(FakeUsbDisk {
            others: vec![FakeUsbDevice::keyboard(0, 0, vec![4])],
            ..d()
        }),
        "shared-root-port" => usb(FakeUsbDisk {
            ports: vec![1, 3],
            others: vec![FakeUsbDevice::keyboard(0, 0, vec![1, 1])],
            ..d()
        }),
        "companion-keyboard" => usb(FakeUsbDisk {
            controllers: vec![FakeController::ehci(), FakeController::uhci_companion()],
            others: vec![FakeUsbDevice::keyboard(1, 0, vec![2])],
            ..d()
        }),
        "full-speed-companion" => usb(FakeUsbDisk {
            controllers: vec![FakeController::uhci_companion(), FakeController::ehci()],
            speed: "12",
            ..d()
        }),
        "too-small-4gb" => usb(FakeUsbDisk {
            sectors: 7_837_696,
            partitions: vec![(2048, 7_837_696 - 2048)],
            ..d()
        }),
        "warn-12gb" => usb(FakeUsbDisk {
            sectors: 23_437_500,
            partitions: vec![(2048, 23_437_500 - 2048)],
            ..d()
        }),
        "storage-not-msc" => usb(FakeUsbDisk {
            interface: (0xff, 0x06, 0x50),
            ..d()
        }),
        "sata-disk" => Some(("sda", sata_disk())),
        "loop-device" => Some(("loop0", loop_device(SECTORS_16GB, "/var/tmp/ufd.img"))),
        _ => None,
    }
}

/// Names accepted by [`case`].
pub const CASES: &[&str] = &[
    "conformant",
    "removable-stick",
    "usb3-xhci",
    "one-hub",
    "two-hubs",
    "shared-controller",
    "shared-root-port",
    "companion-keyboard",
    "full-speed-companion",
    "too-small-4gb",
    "warn-12gb",
    "storage-not-msc",
    "sata-disk",
    "loop-device",
];
