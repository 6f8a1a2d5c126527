//! # ufd-probe: the guest probe
//!
//! A UEFI application that stands in for Windows Boot Manager, winload and the kernel's wait
//! for the boot device, on the real bytes the provisioner wrote. The provisioner places it as
//! `bootmgfw.efi`, `bcdboot` copies it to the UFD, and the firmware boots it from the stick.
//!
//! It reports one JSON object per line, prefixed `UFDPROBE `, on ConOut (which OVMF mirrors to
//! the serial port) and, byte for byte, on the debugcon port 0xE9; then it powers the machine
//! off through `ResetSystem(EfiResetShutdown)` (QEMU exits with status 0).
//!
//! 1. `platform`: CPUID (long mode, NX, VMX, SVM, vendor, hypervisor vendor), EFER.NXE,
//!    firmware vendor/revision, memory from the memory map.
//! 2. `boot-device`: from its own LoadedImage device path — the whole disk, the USB host
//!    controller (PCI class 0C03h prog-if), hub depth (`USB()` nodes), UsbIo device and
//!    interface descriptors, BlockIo RemovableMedia and capacity, other USB devices on the
//!    same controller and root port.
//! 3. `hop`: the boot path walked by `ufd-bootpath` over the firmware's BlockIo.
//! 4. `verdict`: every OEM rule the guest can judge, by the shared rule IDs.
//! 5. Boot manager and winload refuse at the first failed hop (`refused` record, no kernel).
//!    Otherwise `handoff` (the record the harness unplugs the stick on), a 1.5 s settle, then
//!    the kernel's wait for the boot disk (matched by the BCD loader's disk signature) for up to
//!    PollBootPartitionTimeout ms as `ufd_formats::policy::effective_boot_device_wait_ms` makes
//!    it effective (absent → no wait; < 200 → none; > 180000 → clamped: the public
//!    nt!PnpBootDeviceWait disassembly, Windows 7 itself unverified). It polls the firmware's
//!    BlockIo handle list every 100 ms and reads sector 0 only of handles just listed (a read
//!    to a pulled device stalls ~18 s in OVMF: shared/reference/qemu.md §4), and ends in a
//!    `kernel` record `surfaced after N ms` or `STOP 0x0000007B INACCESSIBLE_BOOT_DEVICE after
//!    N ms`. The final `done` record carries `outcome`: `boots`, `bugcheck 0x7B` or `refused`.
//!
//! Bad data never hangs it: a corrupt BCD, VHD or hive is a failed hop and a verdict.
//!
//! Time is the TSC, calibrated at start against the ACPI PM timer the FADT names (found
//! through the EFI configuration table's ACPI 2.0 RSDP and parsed by `ufd_bootpath::acpi`);
//! the `hello` record says which reference calibrated it (`clock`), and falls back to the
//! firmware's Stall only when there is no usable PM timer.
//!
//! `unsafe` is confined to port I/O (0xE9, PCI configuration 0xCF8/0xCFC, the PM timer), RDMSR
//! of EFER, RDTSC, reads of the ACPI tables inside the firmware's memory map, and opening
//! protocols non-exclusively (`GetProtocol`, so no driver is disconnected).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use core::time::Duration;

use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol, SearchType};
use uefi::mem::memory_map::{MemoryMap, MemoryType};
use uefi::prelude::*;
use uefi::proto::device_path::text::{AllowShortcuts, DisplayOnly};
use uefi::proto::device_path::DevicePath;
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::block::BlockIO;
use uefi::proto::usb::io::UsbIo;
use uefi::proto::ProtocolPointer;
use uefi::runtime::ResetType;
use uefi::table::cfg::ConfigTableEntry;

use ufd_bootpath::acpi;
use ufd_bootpath::dev::{ChunkCache, ChunkSource};
use ufd_bootpath::guest::{self, CpuFacts, HostController, UsbFacts};
use ufd_bootpath::json::{hop_line, verdict_line, Obj};
use ufd_bootpath::report::{self, PREFIX};
use ufd_bootpath::walk::{walk, BootPath, Options};
/// Poll period of the kernel-phase wait (the firmware's USB root hub is polled every 100 ms).
const POLL_MS: u64 = 100;

// ---------------------------------------------------------------------------------------------
// output

fn debugcon(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: port 0xE9 is QEMU's debugcon (or unused on real hardware); writing a byte
        // has no other effect.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") 0xE9u16, in("al") b, options(nomem, nostack))
        };
    }
}

fn emit(json: &str) {
    let line = format!("{PREFIX}{json}\r\n");
    uefi::system::with_stdout(|out| {
        let _ = out.write_str(&line);
    });
    debugcon(line.replace('\r', "").as_bytes());
}

// ---------------------------------------------------------------------------------------------
// time

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// PM-timer ticks the TSC calibration spans at least: 100 ms.
const CALIBRATION_PM_TICKS: u32 = (acpi::PM_TIMER_HZ / 10) as u32;

/// One 32-bit read of the ACPI PM timer's I/O port (QEMU's `acpi_pm_tmr_ops` accept 4-byte
/// accesses only).
fn pm_timer_read(port: u16) -> u32 {
    let v: u32;
    // SAFETY: an I/O read of the PM timer port the FADT names; reading it has no side effects.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}

/// The firmware's memory map as sorted, merged `[start, end)` physical ranges: the only
/// memory the ACPI reader touches (UEFI identity-maps it).
fn memory_ranges() -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = match boot::memory_map(MemoryType::LOADER_DATA) {
        Ok(map) => map
            .entries()
            .map(|d| {
                let start = d.phys_start;
                (
                    start,
                    start.saturating_add(d.page_count.saturating_mul(4096)),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    r.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The ACPI PM timer from the firmware's tables: RSDP from the EFI configuration table (ACPI
/// 2.0 GUID, else 1.0), then `ufd_bootpath::acpi` (XSDT/RSDT → FACP → X_PM_TMR_BLK or
/// PM_TMR_BLK). The error says why there is none.
fn acpi_pm_timer() -> Result<acpi::PmTimer, String> {
    let rsdp = uefi::system::with_config_table(|t| {
        [ConfigTableEntry::ACPI2_GUID, ConfigTableEntry::ACPI_GUID]
            .iter()
            .find_map(|g| t.iter().find(|e| e.guid == *g))
            .map(|e| e.address as u64)
    })
    .ok_or("no ACPI table in the EFI configuration table")?;
    let ranges = memory_ranges();
    let mem = |at: u64, buf: &mut [u8]| -> bool {
        let Some(end) = at.checked_add(buf.len() as u64) else {
            return false;
        };
        if at == 0 || !ranges.iter().any(|r| r.0 <= at && end <= r.1) {
            return false;
        }
        // SAFETY: the range lies in the firmware's memory map, which boot services keep
        // identity-mapped; ACPI tables are only read.
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    };
    let rsdp = acpi::rsdp_at(&mem, rsdp).map_err(|e| e.to_string())?;
    acpi::fadt(&mem, &rsdp)
        .and_then(|f| f.pm_timer())
        .map_err(|e| e.to_string())
}

/// A millisecond clock from the TSC, calibrated against the ACPI PM timer (see
/// `ufd_bootpath::acpi::calibrate_tsc` for why a firmware stall is not good enough under TCG
/// on a loaded host), or against the firmware's Stall when there is no usable PM timer.
struct Clock {
    t0: u64,
    per_ms: u64,
    /// What calibrated it, for the `hello` record: `tsc/acpi-pm-timer 0x608` or
    /// `tsc/firmware-stall (why not the PM timer)`.
    reference: String,
}

impl Clock {
    fn new() -> Clock {
        let stall = || {
            let a = rdtsc();
            boot::stall(Duration::from_millis(10));
            ((rdtsc() - a) / 10).max(1)
        };
        let (per_ms, reference) = match acpi_pm_timer() {
            Ok(t) => {
                let read = || pm_timer_read(t.port);
                match acpi::calibrate_tsc(&rdtsc, &read, t.bits, CALIBRATION_PM_TICKS) {
                    Ok(c) => (c.tsc_per_ms, format!("tsc/acpi-pm-timer {:#x}", t.port)),
                    Err(e) => (
                        stall(),
                        format!("tsc/firmware-stall (ACPI PM timer {:#x}: {e})", t.port),
                    ),
                }
            }
            Err(why) => (stall(), format!("tsc/firmware-stall ({why})")),
        };
        Clock {
            t0: rdtsc(),
            per_ms,
            reference,
        }
    }
    fn ms(&self) -> u64 {
        (rdtsc() - self.t0) / self.per_ms
    }
}

// ---------------------------------------------------------------------------------------------
// platform

fn cpuid(leaf: u32) -> [u32; 4] {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 processor.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, 0) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// CPUID decoded by the shared `ufd_bootpath::report::cpu_facts`, with EFER as the firmware
/// left it (EFER exists on every long-mode processor, and we run in long mode).
fn cpu_facts() -> CpuFacts {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of IA32_EFER (0xC0000080) is defined in long mode.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") 0xC000_0080u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    report::cpu_facts(&cpuid, Some(u64::from(lo) | (u64::from(hi) << 32)))
}

fn platform(c: &CpuFacts) {
    let mut total = 0u64;
    let mut free = 0u64;
    if let Ok(map) = boot::memory_map(MemoryType::LOADER_DATA) {
        for d in map.entries() {
            let bytes = d.page_count * 4096;
            total += bytes;
            if d.ty == MemoryType::CONVENTIONAL {
                free += bytes;
            }
        }
    }
    let rev = uefi::system::uefi_revision();
    emit(
        &report::platform_cpu(Obj::new().str("event", "platform"), c)
            .str(
                "firmware_vendor",
                &uefi::system::firmware_vendor().to_string(),
            )
            .str(
                "firmware_revision",
                &format!("{:#x}", uefi::system::firmware_revision()),
            )
            .str("uefi_revision", &format!("{}.{}", rev.major(), rev.minor()))
            .num("memory_bytes", total)
            .num("conventional_bytes", free)
            .finish(),
    );
}

// ---------------------------------------------------------------------------------------------
// protocols

/// Open `P` on `h` without exclusivity (no driver gets disconnected).
fn get<P: ProtocolPointer + ?Sized>(h: Handle) -> Option<ScopedProtocol<P>> {
    // SAFETY: GetProtocol does not take ownership; the probe never uninstalls protocols and
    // drops the scoped protocol before any handle it came from can be reconnected by it.
    unsafe {
        boot::open_protocol::<P>(
            OpenProtocolParams {
                handle: h,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
    .ok()
}

fn path_text(h: Handle) -> Option<String> {
    let dp = get::<DevicePath>(h)?;
    dp.to_string16(DisplayOnly(false), AllowShortcuts(false))
        .ok()
        .map(|s| s.to_string())
}

fn handles<P: ProtocolPointer + ?Sized>() -> Vec<Handle> {
    boot::locate_handle_buffer(SearchType::from_proto::<P>())
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// OVMF connects only the devices in QEMU's boot order; the probe connects everything once
/// (qemu.md §0 finding 4), so every USB disk shows up, then never again per poll.
fn connect_all(clock: &Clock) {
    let t = clock.ms();
    let all = boot::locate_handle_buffer(SearchType::AllHandles)
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let mut ok = 0u32;
    for h in &all {
        if boot::connect_controller(*h, &[], None, true).is_ok() {
            ok += 1;
        }
    }
    emit(
        &Obj::new()
            .str("event", "connect")
            .num("handles", all.len() as u64)
            .num("connected", ok)
            .num("ms", clock.ms() - t)
            .finish(),
    );
}

// ---------------------------------------------------------------------------------------------
// PCI configuration space (bus 0 only)

fn pci_class(dev: u8, func: u8) -> u32 {
    let addr = 0x8000_0000u32 | (u32::from(dev) << 11) | (u32::from(func) << 8) | 0x08;
    let v: u32;
    // SAFETY: configuration mechanism #1 (0xCF8/0xCFC) reads one dword of bus 0 config space.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") 0xCF8u16, in("eax") addr, options(nomem, nostack));
        core::arch::asm!("in eax, dx", in("dx") 0xCFCu16, out("eax") v, options(nomem, nostack));
    }
    v
}

/// `Pci(0x4,0x0)` → (4, 0).
fn pci_node(node: &str) -> Option<(u8, u8)> {
    let inner = node.strip_prefix("Pci(")?.strip_suffix(')')?;
    let (d, f) = inner.split_once(',')?;
    let p = |s: &str| u8::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    Some((p(d)?, p(f)?))
}

/// The controller kind, when its path is `PciRoot(..)/Pci(d,f)` (a device on bus 0).
fn controller_kind(controller_path: &str) -> (Option<HostController>, Option<u32>) {
    let nodes = guest::path_nodes(controller_path);
    let pcis: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|n| n.starts_with("Pci("))
        .collect();
    if pcis.len() != 1 {
        return (None, None);
    }
    let Some((d, f)) = pci_node(pcis[0]) else {
        return (None, None);
    };
    let class = pci_class(d, f);
    let (base, sub, prog) = ((class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8);
    if base == 0x0C && sub == 0x03 {
        (Some(HostController::from_prog_if(prog)), Some(class >> 8))
    } else {
        (None, Some(class >> 8))
    }
}

// ---------------------------------------------------------------------------------------------
// the disk, read through BlockIo

/// A whole-disk BlockIo, read in whole, aligned 64 KiB chunks; cached as a `ReadAt` by the
/// shared `ufd_bootpath::dev::ChunkCache` (the NTFS walk does many small reads).
struct BlockDisk {
    bio: ScopedProtocol<BlockIO>,
    media_id: u32,
    block: u64,
    size: u64,
}

const CHUNK: u64 = 64 * 1024;
const CHUNKS: usize = 32;

impl BlockDisk {
    fn open(h: Handle) -> Option<ChunkCache<BlockDisk>> {
        let bio = get::<BlockIO>(h)?;
        let m = bio.media();
        let block = u64::from(m.block_size());
        if block == 0 || !m.is_media_present() || !CHUNK.is_multiple_of(block) {
            return None;
        }
        let (media_id, size) = (m.media_id(), (m.last_block() + 1) * block);
        Some(ChunkCache::new(
            BlockDisk {
                bio,
                media_id,
                block,
                size,
            },
            CHUNK,
            CHUNKS,
        ))
    }
}

impl ChunkSource for BlockDisk {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_chunk(&mut self, start: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; len];
        self.bio
            .read_blocks(self.media_id, start / self.block, &mut buf)
            .map_err(|e| {
                format!(
                    "BlockIo ReadBlocks at LBA {}: {:?}",
                    start / self.block,
                    e.status()
                )
            })?;
        Ok(buf)
    }
}

/// Sector 0's MBR disk signature of a whole-disk BlockIo handle (one read).
fn disk_signature(h: Handle) -> Option<u32> {
    let mut bio = get::<BlockIO>(h)?;
    let (partition, present, block, media_id) = {
        let m = bio.media();
        (
            m.is_logical_partition(),
            m.is_media_present(),
            m.block_size(),
            m.media_id(),
        )
    };
    if partition || !present || block < 512 {
        return None;
    }
    let mut b = vec![0u8; block as usize];
    bio.read_blocks(media_id, 0, &mut b).ok()?;
    (b[510] == 0x55 && b[511] == 0xAA)
        .then(|| u32::from_le_bytes([b[0x1B8], b[0x1B9], b[0x1BA], b[0x1BB]]))
}

// ---------------------------------------------------------------------------------------------
// the boot device

struct BootDevice {
    disk: Option<Handle>,
    partition_offset: Option<u64>,
    usb: UsbFacts,
}

/// `.../HD(1,MBR,0xE5B00001,0x800,0x1F800)` → the partition's byte offset (start LBA × 512).
fn hd_offset(path: &str) -> Option<u64> {
    let node = guest::path_nodes(path)
        .into_iter()
        .rev()
        .find(|n| n.starts_with("HD("))?;
    let inner = node.strip_prefix("HD(")?.strip_suffix(')')?;
    let start = inner.split(',').nth(3)?.trim();
    u64::from_str_radix(start.trim_start_matches("0x"), 16)
        .ok()
        .map(|l| l * 512)
}

fn boot_device() -> BootDevice {
    let dev = get::<LoadedImage>(boot::image_handle()).and_then(|li| li.device());
    let image_path = dev.and_then(path_text).unwrap_or_default();
    let disk_path = match image_path.find("/HD(") {
        Some(i) => image_path[..i].to_string(),
        None => image_path.clone(),
    };
    let disk = handles::<BlockIO>()
        .into_iter()
        .find(|h| path_text(*h).as_deref() == Some(disk_path.as_str()));
    let (usb_nodes, controller_path, root_port) = guest::usb_topology(&disk_path);
    let (controller, class) = controller_kind(&controller_path);
    let mut usb = UsbFacts {
        path: disk_path.clone(),
        controller_path: controller_path.clone(),
        controller,
        usb_nodes,
        ..UsbFacts::default()
    };
    if let Some(h) = disk {
        if let Some(bio) = get::<BlockIO>(h) {
            usb.removable = Some(bio.media().is_removable_media());
        }
        if let Some(mut io) = get::<UsbIo>(h) {
            usb.bcd_usb = io.device_descriptor().ok().map(|d| d.bcd_usb);
            usb.interface = io.interface_descriptor().ok().map(|i| {
                (
                    i.interface_class,
                    i.interface_subclass,
                    i.interface_protocol,
                )
            });
        }
    }
    if usb_nodes > 0 {
        for h in handles::<UsbIo>() {
            let Some(p) = path_text(h) else { continue };
            // the UFD itself, and the hubs it hangs behind, are not "other devices"
            if p == disk_path || disk_path.starts_with(&format!("{p}/")) {
                continue;
            }
            let (_, ctl, port) = guest::usb_topology(&p);
            if ctl == controller_path {
                if port == root_port {
                    usb.others_on_root_port.push(p.clone());
                }
                usb.others_on_controller.push(p);
            }
        }
    }
    let (removable, present, block, last) = disk
        .and_then(get::<BlockIO>)
        .map(|b| {
            let m = b.media();
            (
                m.is_removable_media(),
                m.is_media_present(),
                m.block_size(),
                m.last_block(),
            )
        })
        .unwrap_or_default();
    let signature = disk.and_then(disk_signature);
    emit(
        &Obj::new()
            .str("event", "boot-device")
            .str("image_path", &image_path)
            .str("disk_path", &disk_path)
            .bool("disk_found", disk.is_some())
            .opt_num("partition_offset", hd_offset(&image_path))
            .opt_str("controller", controller.map(HostController::name))
            .opt_str("pci_class", class.map(|c| format!("{c:06x}")).as_deref())
            .str("controller_path", &controller_path)
            .num("usb_nodes", usb_nodes as u64)
            .opt_str("root_port", root_port.as_deref())
            .opt_str(
                "bcd_usb",
                usb.bcd_usb
                    .map(|b| format!("{:x}.{:02x}", b >> 8, b & 0xFF))
                    .as_deref(),
            )
            .opt_num("interface_class", usb.interface.map(|i| i.0))
            .opt_num("interface_subclass", usb.interface.map(|i| i.1))
            .opt_num("interface_protocol", usb.interface.map(|i| i.2))
            .bool("removable", removable)
            .bool("media_present", present)
            .num("block_size", block)
            .num(
                "capacity_bytes",
                if present {
                    (last + 1) * u64::from(block)
                } else {
                    0
                },
            )
            .opt_str(
                "disk_signature",
                signature.map(|s| format!("{s:#010x}")).as_deref(),
            )
            .strs(
                "others_on_controller",
                usb.others_on_controller.iter().map(String::as_str),
            )
            .strs(
                "others_on_root_port",
                usb.others_on_root_port.iter().map(String::as_str),
            )
            .finish(),
    );
    BootDevice {
        disk,
        partition_offset: hd_offset(&image_path),
        usb,
    }
}

// ---------------------------------------------------------------------------------------------
// the kernel phase

/// Time between the hand-off record and the first poll. It stands for the kernel's start-up
/// before its boot-device wait, when the USB stack re-enumerates the stick; the harness
/// unplugs the stick on the hand-off record (late-surfacing scenarios), and OVMF removes the
/// handles within ~120 ms of the unplug (qemu.md §4), so no poll touches a pulled device.
const HANDOFF_SETTLE_MS: u64 = 1500;

/// The kernel's wait for the boot disk: returns the boot outcome (`boots`, `bugcheck 0x7B`).
fn kernel_phase(path: &BootPath, sig: u32, clock: &Clock) -> &'static str {
    let kw = report::kernel_wait(path);
    let wait = kw.wait_ms;
    emit(&report::handoff_kernel(sig, &kw, HANDOFF_SETTLE_MS).finish());
    boot::stall(Duration::from_millis(HANDOFF_SETTLE_MS));
    let start = clock.ms();
    // handle -> signature, for handles seen in an earlier poll (read once, never re-read)
    let mut seen: BTreeMap<usize, Option<u32>> = BTreeMap::new();
    loop {
        let now = handles::<BlockIO>();
        seen.retain(|k, _| now.iter().any(|h| h.as_ptr() as usize == *k));
        for h in &now {
            let key = h.as_ptr() as usize;
            if seen.contains_key(&key) {
                continue;
            }
            // listed in this very poll: present now; one read of sector 0
            let s = disk_signature(*h);
            seen.insert(key, s);
            if s == Some(sig) {
                let after = clock.ms() - start;
                emit(&report::kernel_surfaced(after, &path_text(*h).unwrap_or_default()).finish());
                return report::OUTCOME_BOOTS;
            }
        }
        let elapsed = clock.ms() - start;
        if elapsed >= u64::from(wait) {
            emit(&report::kernel_stop(elapsed).finish());
            return report::OUTCOME_BUGCHECK_7B;
        }
        boot::stall(Duration::from_millis(
            POLL_MS.min(u64::from(wait) - elapsed).max(1),
        ));
    }
}

// ---------------------------------------------------------------------------------------------

#[entry]
fn main() -> Status {
    if uefi::helpers::init().is_err() {
        return Status::ABORTED;
    }
    // The probe may take longer than the firmware's 5-minute watchdog under TCG.
    let _ = boot::set_watchdog_timer(0, 0x10000, None);
    let clock = Clock::new();
    emit(
        &Obj::new()
            .str("event", "hello")
            .str("probe", "ufd-probe")
            .str("version", env!("CARGO_PKG_VERSION"))
            .num("tsc_per_ms", clock.per_ms)
            .str("clock", &clock.reference)
            .finish(),
    );
    let cpu = cpu_facts();
    platform(&cpu);
    connect_all(&clock);
    let bd = boot_device();

    let opts = Options {
        boot_partition_offset: bd.partition_offset,
        source: "firmware BlockIo".to_string(),
        ..Options::default()
    };
    let t = clock.ms();
    let path = match bd.disk.and_then(BlockDisk::open) {
        Some(disk) => {
            let mut d = ufd_bootpath::dev::Disk::new(disk);
            walk(&mut d, &opts)
        }
        None => {
            let mut empty = ufd_bootpath::dev::Disk::new(&[][..]);
            walk(&mut empty, &opts)
        }
    };
    for h in &path.hops {
        emit(&hop_line(h));
    }
    let walk_ms = clock.ms() - t;

    // Policy: the device and CPU rules, then the image rules the walk judged.
    let src = "guest UEFI";
    let usb_src = format!("guest UEFI {}", bd.usb.path);
    let device = vec![
        guest::judge_removable(&bd.usb, &format!("{usb_src} BlockIo")),
        guest::judge_usb2(&bd.usb, &format!("{usb_src} UsbIo device descriptor")),
        guest::judge_msc_class(&bd.usb, &format!("{usb_src} UsbIo interface descriptor")),
        guest::judge_nested_hub(&bd.usb, &format!("{usb_src} device path")),
        guest::judge_dedicated(&bd.usb, &format!("{usb_src} UsbIo handles")),
        guest::judge_usb_boot(&bd.usb, &format!("{usb_src} LoadedImage")),
    ]
    .into_iter()
    .chain(report::cpu_verdicts(&cpu, src))
    .collect();
    let verdicts = report::all_verdicts(device, &path);
    for v in &verdicts {
        emit(&verdict_line(v));
    }

    // Boot manager and winload stop at the first hop they cannot pass (an error screen, no
    // kernel); a sparse VHD is refused too. Only a complete path reaches the kernel.
    let outcome = match report::kernel_or_refusal(&path) {
        Ok(sig) => kernel_phase(&path, sig, &clock),
        Err((hop, why)) => {
            emit(&report::refused_line(hop, &why));
            report::OUTCOME_REFUSED
        }
    };
    emit(&report::done_line(
        outcome,
        &path,
        &verdicts,
        walk_ms,
        clock.ms(),
    ));
    uefi::runtime::reset(ResetType::SHUTDOWN, Status::SUCCESS, None)
}
