//! # ufd-bios-probe: the BIOS stand-in for `\bootmgr`
//!
//! The provisioner places this flat binary in the synthetic image as
//! `\Windows\Boot\PCAT\bootmgr`; the bcdboot step copies it to the UFD root as `\bootmgr`, and
//! our NTFS boot record (`provisioner/bootcode/asm/ntfs_vbr.S`) loads it whole to 2000:0000 and
//! jumps there in real mode with DL = the BIOS boot drive and the boot sector still at
//! 0000:7C00 — the hand-off Microsoft's NT6 boot record gives the real bootmgr.
//!
//! ## What it does
//! 1. Real mode (`src/entry.S`): records DL, INT 13h AH=41h (extensions: version, API
//!    bitmap) and AH=48h (EDD drive parameters, 66-byte EDD 3.0 buffer), the BPB's
//!    HiddenSectors (the partition the boot record came from), the BDA disk count, E820 and
//!    A20; then 32-bit protected mode → identity-mapped 4 GiB → long mode → [`rust_main`].
//! 2. Long mode (this file): a heap from the largest E820 RAM region above 2 MiB, then
//!    `UFDPROBE {json}` lines on COM1 (0x3F8, 115200 8N1, driven by port I/O) and,
//!    byte for byte, on the debugcon port 0xE9: `hello`, `platform`, `firmware-handoff`
//!    (what the BIOS handed over; not named `handoff`, which the harness reserves for the
//!    hand-off to the kernel), `boot-device`, then the same `ufd-bootpath` walk, verdicts,
//!    refusal / kernel hand-off and `done` lines as the UEFI probe, assembled by
//!    [`ufd_bootpath::report`]: one checker for both firmware paths.
//! 3. Disk reads: INT 13h AH=42h through `bios_call`, a thunk from long mode back to real
//!    mode (long → 16-bit compatibility mode → paging and EFER.LME off → real mode → `int` →
//!    protected → long mode), into a 32 KiB bounce buffer below 1 MiB, with a chunk cache.
//! 4. Power-off: ACPI S5 as an OS does it — the PM1a control port from the FADT (RSDP →
//!    XSDT/RSDT → FACP, X_PM1a_CNT_BLK or PM1a_CNT_BLK) and SLP_TYPa from the DSDT's `\_S5`
//!    package, written with SLP_EN — so it works on whatever PM base the firmware programmed
//!    (pc and q35 alike); then QEMU's `isa-debug-exit` at 0xF4 (the harness always adds it;
//!    exit status 33), then `hlt`. The tables are parsed by `ufd_bootpath::acpi`, the one
//!    ACPI parser both guest programs use.
//! 5. Time: the TSC, calibrated against the ACPI PM timer the same FADT names (INT 15h AH=86h
//!    only when there is none); `hello` says which (`clock`).
//!
//! ## What the BIOS path cannot judge
//! SeaBIOS answers AH=48h with a 26-byte EDD 1.1 buffer for USB disks (no interface type, no
//! device path; `shared/reference/qemu.md` §5) and never reports removable media. The rules
//! that need the removable bit, the USB version/class or the topology (UFD-NONREMOVABLE,
//! UFD-USB2, UFD-MSC-CLASS, TOPO-NO-NESTED-HUB, TOPO-DEDICATED-CONTROLLER, and HOST-USB-BOOT
//! unless EDD 3.0 names a USB interface) come out NotJudged with the reason as evidence,
//! never as passes. CPU rules are judged from CPUID as in the UEFI probe.
//!
//! ## The kernel phase
//! After a complete walk, sector 0 of the boot drive is read again through INT 13h (before
//! the `handoff` record, on which the harness may unplug the stick) and its disk signature
//! compared with the one the BCD loader's device names: equal → `surfaced` (`boots`), else
//! STOP 0x7B at once. The effective PollBootPartitionTimeout is reported as
//! the UEFI probe does, but not waited out: SeaBIOS's drive table is fixed at POST, so a stick
//! that re-enumerates late (hot-plug emulation) is a UEFI-probe-only scenario.
//!
//! ## Memory
//! 0x20000.. the file (≤ `MAX_BOOTMGR_SIZE` = 0x78000 bytes, checked by link.ld and by
//! `xtask/src/biosprobe.rs`), then .bss (page tables, bounce buffer; link.ld keeps it below
//! 0x90000); the real-mode stack below 0000:7C00; the 64-bit stack 1..2 MiB; the heap above.
//!
//! ## Design choices (where this differs from a first sketch, and why)
//! - The firmware hand-off record is `firmware-handoff`, not `handoff`: the harness treats
//!   any `handoff` event as the hand-off to the kernel and starts a late-surfacing unplug on it
//!   (`harness/src/probe.rs` `is_handoff`).
//! - The heap is a bump allocator written here (free/grow of the newest block only) rather
//!   than a crate: the probe allocates a few MiB once and powers off; no dependency needed.
//! - No 64-bit IDT: interrupts stay off in long mode and the BIOS's real-mode IVT is
//!   reloaded for every thunk. A CPU exception in long mode therefore triple-faults, which
//!   QEMU (with the harness's `-no-reboot`) turns into a stop without `done`: the harness
//!   reports the run as failed. Rust panics are reported (`{"event":"panic"}`) and power off.
//! - Everything is linked at its load address (no split VMA); real-mode code addresses its
//!   own data as `symbol - 0x20000` with DS = 2000h, which link.ld checks stays within 64 KiB.
//!
//! Verified here (QEMU 7.2, SeaBIOS 1.16, TCG, q35 and pc, usb-storage on EHCI):
//! AH=41h → AH=30h (EDD 3.0), API 0007h; AH=48h → 26-byte buffer, info flags 0, sectors of
//! the stick; AH=42h reads LBAs beyond 2^24 (a 16 GB stick's last sector, a 12 GiB VHD's
//! footer); FADT PM1a_CNT 0x604, `_S5` SLP_TYP 0 on both machine types.
//!
//! `unsafe` is confined to port I/O, CPUID/RDTSC, the thunk's shared statics, reads of the
//! ACPI tables and the heap.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ufd_bootpath::acpi;
use ufd_bootpath::dev::{ChunkCache, ChunkSource, Disk};
use ufd_bootpath::json::{hop_line, verdict_line, Obj};
use ufd_bootpath::report;
use ufd_bootpath::walk::{walk, BootPath, Options};
use ufd_formats::policy::{self, Outcome, Verdict};

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

// ---------------------------------------------------------------------------------------------
// the real-mode side (src/entry.S)

/// Registers in and out of one real-mode software interrupt.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Regs {
    eax: u32,
    ebx: u32,
    ecx: u32,
    edx: u32,
    esi: u32,
    edi: u32,
    ebp: u32,
    ds: u16,
    es: u16,
    flags: u16,
}

/// Length of the `bootinfo` block entry.S fills (offsets below).
const BOOTINFO_LEN: usize = 0x670;
const BI_DRIVE: usize = 0x00;
const BI_EXT_CF: usize = 0x01;
const BI_EXT_AX: usize = 0x02;
const BI_EXT_BX: usize = 0x04;
const BI_EXT_CX: usize = 0x06;
const BI_EDD_CF: usize = 0x08;
const BI_A20: usize = 0x09;
const BI_EDD_AX: usize = 0x0A;
const BI_E820_N: usize = 0x0C;
const BI_EBDA: usize = 0x0E;
const BI_HIDDEN: usize = 0x10;
const BI_OEM: usize = 0x14;
const BI_BDA_N: usize = 0x1C;
const BI_EDD: usize = 0x20;
const BI_E820: usize = 0x70;
const E820_MAX: usize = 64;

/// The bounce buffer's size (entry.S `bounce`), in bytes.
const BOUNCE_LEN: usize = 0x8000;
/// The 64-bit stack entry.S sets up: [1 MiB, 2 MiB).
const STACK: (u64, u64) = (0x10_0000, 0x20_0000);

extern "C" {
    fn bios_call(int_no: u32);
    static mut thunk_regs: Regs;
    static mut thunk_dap: [u8; 32];
    static mut bounce: [u8; BOUNCE_LEN];
    static __bss_end: u8;
}

/// One software interrupt in real mode.
fn int(no: u8, r: Regs) -> Regs {
    // SAFETY: single-threaded, interrupts off in long mode: nothing else touches thunk_regs;
    // bios_call preserves the SysV callee-saved registers and returns to long mode.
    unsafe {
        core::ptr::write_volatile(addr_of_mut!(thunk_regs), r);
        bios_call(u32::from(no));
        core::ptr::read_volatile(addr_of!(thunk_regs))
    }
}

/// A linear address below 1 MiB as real-mode segment:offset.
fn seg_off(linear: usize) -> (u16, u16) {
    ((linear >> 4) as u16, (linear & 0xF) as u16)
}

// ---------------------------------------------------------------------------------------------
// port I/O, output, power-off

fn outb(port: u16, v: u8) {
    // SAFETY: writes to the serial, debugcon, ACPI and debug-exit ports only.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}
fn outw(port: u16, v: u16) {
    // SAFETY: see outb.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) };
}
fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: reads the serial line status register.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

const COM1: u16 = 0x3F8;

fn serial_init() {
    outb(COM1 + 1, 0); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 1); // 115200 baud
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 3); // 8N1
    outb(COM1 + 2, 0xC7); // FIFO on
}

fn put(b: u8) {
    // Transmit holding register empty, bounded (a missing UART reads 0xFF: "empty").
    for _ in 0..100_000 {
        if inb(COM1 + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(COM1, b);
}

fn write_raw(s: &str) {
    for &b in s.as_bytes() {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
        outb(0xE9, b);
    }
}

/// One `UFDPROBE {json}` line: CR LF on COM1, LF on debugcon (as the UEFI probe).
fn emit(json: &str) {
    write_raw(report::PREFIX);
    write_raw(json);
    write_raw("\n");
}

/// ACPI PM1a control port and S5 SLP_TYP, found by [`acpi_facts`] at start (0: not found).
static PM1A_S5: AtomicU32 = AtomicU32::new(0);
/// TSC ticks per millisecond once [`Clock::new`] calibrated it (a 3 GHz guess before).
static TSC_PER_MS: AtomicU64 = AtomicU64::new(3_000_000);

fn power_off() -> ! {
    // ACPI S5: SLP_TYP | SLP_EN (bit 13) to PM1a_CNT from the FADT, as an OS does.
    let pm = PM1A_S5.load(Ordering::Relaxed);
    if pm != 0 {
        outw(pm as u16, (((pm >> 16) as u16 & 7) << 10) | 0x2000);
        // QEMU acts on the request asynchronously, when the vCPU next leaves guest code:
        // give it half a second before the fallback.
        let per_ms = TSC_PER_MS.load(Ordering::Relaxed);
        let t = rdtsc();
        while rdtsc().wrapping_sub(t) < 500 * per_ms {
            core::hint::spin_loop();
        }
    }
    // QEMU isa-debug-exit (the harness always adds it): exit status (0x10 << 1) | 1 = 33.
    outb(0xF4, 0x10);
    loop {
        // SAFETY: halts with interrupts off; nothing is left to do.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Physical memory below 4 GiB (identity-mapped by entry.S) as `ufd_bootpath::acpi`'s
/// memory reader: `false` for address 0 and anything reaching past 4 GiB.
fn phys_read(addr: u64, buf: &mut [u8]) -> bool {
    let Some(end) = addr.checked_add(buf.len() as u64) else {
        return false;
    };
    if addr == 0 || end > 1 << 32 {
        return false;
    }
    // SAFETY: the range is below 4 GiB, mapped by the identity page tables; firmware tables
    // (E820 reserved/ACPI) and the BIOS areas are only read.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
    true
}

/// What the stand-in takes from the firmware's ACPI tables, parsed by `ufd_bootpath::acpi`
/// (RSDP in the EBDA's first KiB or 0xE0000..0xFFFFF → XSDT/RSDT → FACP → DSDT): the S5
/// soft-off registers (PM1a control port, `\_S5` SLP_TYPa) and the PM timer. Allocation-free:
/// it runs before the heap exists, so that [`power_off`] can use S5 on every path.
struct AcpiFacts {
    s5: Result<(u16, u8), acpi::Error>,
    pm_timer: Result<acpi::PmTimer, acpi::Error>,
}

fn acpi_facts(ebda: u64) -> AcpiFacts {
    let mem = phys_read;
    match acpi::find_rsdp(&mem, &acpi::bios_rsdp_areas(ebda)).and_then(|r| acpi::fadt(&mem, &r)) {
        Ok(f) => AcpiFacts {
            s5: acpi::s5(&mem, &f),
            pm_timer: f.pm_timer(),
        },
        Err(e) => AcpiFacts {
            s5: Err(e),
            pm_timer: Err(e),
        },
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // No allocation here: the heap may be what failed.
    struct W;
    impl core::fmt::Write for W {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for c in s.chars() {
                let b = if c.is_ascii() && c != '"' && c != '\\' && !c.is_ascii_control() {
                    c as u8
                } else {
                    b'?'
                };
                put(b);
                outb(0xE9, b);
            }
            Ok(())
        }
    }
    write_raw(report::PREFIX);
    write_raw("{\"event\":\"panic\",\"text\":\"");
    let _ = core::fmt::write(&mut W, format_args!("{}", info.message()));
    if let Some(l) = info.location() {
        let _ = core::fmt::write(&mut W, format_args!(" at {}:{}", l.file(), l.line()));
    }
    write_raw("\"}\n");
    power_off()
}

// ---------------------------------------------------------------------------------------------
// heap

/// A bump allocator over one E820 region: single-threaded, frees and grows the most recent
/// block in place (Vec growth, temporary buffers); other frees are not reused — the probe
/// runs once and powers off, and the region is hundreds of MiB.
struct Bump {
    state: UnsafeCell<(usize, usize, usize)>, // next, end, last block start
}

// SAFETY: one CPU, interrupts off in long mode, no threads.
unsafe impl Sync for Bump {}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let s = &mut *self.state.get();
        let start = (s.0 + l.align() - 1) & !(l.align() - 1);
        match start.checked_add(l.size()) {
            Some(end) if end <= s.1 && s.1 != 0 => {
                s.0 = end;
                s.2 = start;
                start as *mut u8
            }
            _ => core::ptr::null_mut(),
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let s = &mut *self.state.get();
        if p as usize == s.2 && s.2 + l.size() == s.0 {
            s.0 = s.2;
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let s = &mut *self.state.get();
        if p as usize == s.2 && s.2 + l.size() == s.0 {
            if let Some(end) = s.2.checked_add(new).filter(|e| *e <= s.1) {
                s.0 = end;
                return p;
            }
        }
        let n = self.alloc(Layout::from_size_align_unchecked(new, l.align()));
        if !n.is_null() {
            core::ptr::copy_nonoverlapping(p, n, l.size().min(new));
        }
        n
    }
}

#[global_allocator]
static HEAP: Bump = Bump {
    state: UnsafeCell::new((0, 0, 0)),
};

// ---------------------------------------------------------------------------------------------
// what the BIOS handed over

struct BootInfo {
    b: [u8; BOOTINFO_LEN],
}

impl BootInfo {
    fn u8(&self, o: usize) -> u8 {
        self.b[o]
    }
    fn u16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.b[o], self.b[o + 1]])
    }
    fn u32(&self, o: usize) -> u32 {
        u32::from_le_bytes([self.b[o], self.b[o + 1], self.b[o + 2], self.b[o + 3]])
    }
    fn u64(&self, o: usize) -> u64 {
        u64::from(self.u32(o)) | (u64::from(self.u32(o + 4)) << 32)
    }
    fn drive(&self) -> u8 {
        self.u8(BI_DRIVE)
    }
    /// INT 13h AH=41h: CF clear, BX = AA55h and API bit 0 (fixed disk access: AH=42h).
    fn ext_present(&self) -> bool {
        self.u8(BI_EXT_CF) == 0 && self.u16(BI_EXT_BX) == 0xAA55 && self.u16(BI_EXT_CX) & 1 != 0
    }
    fn edd_ok(&self) -> bool {
        self.u8(BI_EDD_CF) == 0 && self.edd_size() >= 0x1A
    }
    fn edd_size(&self) -> u16 {
        self.u16(BI_EDD)
    }
    fn sectors(&self) -> u64 {
        self.u64(BI_EDD + 0x10)
    }
    fn bytes_per_sector(&self) -> u16 {
        self.u16(BI_EDD + 0x18)
    }
    /// EDD 3.0 block (buffer ≥ 0x42 bytes and key BEDDh): host bus, interface type,
    /// interface path, device path.
    fn edd3(&self) -> Option<(String, String, [u8; 8], [u8; 8])> {
        if self.edd_size() < 0x42 || self.u16(BI_EDD + 0x1E) != 0xBEDD {
            return None;
        }
        let text = |o: usize, n: usize| -> String {
            self.b[BI_EDD + o..BI_EDD + o + n]
                .iter()
                .map(|&c| if c.is_ascii_graphic() { c as char } else { ' ' })
                .collect::<String>()
                .trim()
                .to_string()
        };
        let mut ip = [0u8; 8];
        ip.copy_from_slice(&self.b[BI_EDD + 0x30..BI_EDD + 0x38]);
        let mut dp = [0u8; 8];
        dp.copy_from_slice(&self.b[BI_EDD + 0x38..BI_EDD + 0x40]);
        Some((text(0x24, 4), text(0x28, 8), ip, dp))
    }
    /// (base, length, type) of each E820 entry, and how many there are (no allocation: the
    /// heap is made from this map).
    fn e820(&self) -> ([(u64, u64, u32); E820_MAX], usize) {
        let n = usize::from(self.u16(BI_E820_N)).min(E820_MAX);
        let mut out = [(0, 0, 0); E820_MAX];
        for (i, e) in out.iter_mut().enumerate().take(n) {
            let o = BI_E820 + i * 24;
            *e = (self.u64(o), self.u64(o + 8), self.u32(o + 16));
        }
        (out, n)
    }
}

fn hex(v: u64, digits: usize) -> String {
    format!("{v:#0w$x}", w = digits + 2)
}

fn bytes_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// time

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// INT 15h AH=86h: wait `us` microseconds (BIOS).
fn bios_wait_us(us: u32) -> bool {
    let r = int(
        0x15,
        Regs {
            eax: 0x8600,
            ecx: us >> 16,
            edx: us & 0xFFFF,
            ..Regs::default()
        },
    );
    r.flags & 1 == 0
}

/// PM-timer ticks the TSC calibration spans at least: 100 ms.
const CALIBRATION_PM_TICKS: u32 = (acpi::PM_TIMER_HZ / 10) as u32;

/// One 32-bit read of the ACPI PM timer's I/O port.
fn pm_timer_read(port: u16) -> u32 {
    let v: u32;
    // SAFETY: an I/O read of the PM timer port the FADT names; reading it has no side effects.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}

/// A millisecond clock from the TSC, calibrated against the ACPI PM timer (see
/// `ufd_bootpath::acpi::calibrate_tsc` for why a firmware wait is not good enough under TCG on
/// a loaded host), else against INT 15h AH=86h (10 ms), else a 3 GHz guess.
struct Clock {
    t0: u64,
    per_ms: u64,
    /// What calibrated it, for the `hello` record: `tsc/acpi-pm-timer 0x608`,
    /// `tsc/firmware-stall (why not the PM timer)` or `tsc/assumed-3GHz (...)`.
    reference: String,
}

impl Clock {
    fn new(pm_timer: &Result<acpi::PmTimer, acpi::Error>) -> Clock {
        let calibrated = match pm_timer {
            Ok(t) => {
                let read = || pm_timer_read(t.port);
                acpi::calibrate_tsc(&rdtsc, &read, t.bits, CALIBRATION_PM_TICKS)
                    .map(|c| (c.tsc_per_ms, format!("tsc/acpi-pm-timer {:#x}", t.port)))
                    .map_err(|e| format!("ACPI PM timer {:#x}: {e}", t.port))
            }
            Err(e) => Err(e.to_string()),
        };
        let (per_ms, reference) = calibrated.unwrap_or_else(|why| {
            let a = rdtsc();
            if bios_wait_us(10_000) {
                (
                    ((rdtsc() - a) / 10).max(1),
                    format!("tsc/firmware-stall ({why})"),
                )
            } else {
                (
                    TSC_PER_MS.load(Ordering::Relaxed),
                    format!("tsc/assumed-3GHz ({why}; INT 15h AH=86h failed)"),
                )
            }
        });
        TSC_PER_MS.store(per_ms, Ordering::Relaxed);
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
// the disk, through INT 13h

/// Sectors per INT 13h AH=42h call: the bounce buffer (64 × 512 B; EDD allows 127).
const SECTORS_PER_CALL: usize = BOUNCE_LEN / 512;

/// INT 13h AH=42h of `count` ≤ 64 sectors at `lba` into the bounce buffer; the AH status on
/// failure. One retry after AH=00h (reset), as the boot record does.
fn read_lba(drive: u8, lba: u64, count: u16) -> Result<&'static [u8], u8> {
    let (dap_seg, dap_off) = seg_off(addr_of!(thunk_dap) as usize);
    let (buf_seg, buf_off) = seg_off(addr_of!(bounce) as usize);
    let mut last = 0u8;
    for attempt in 0..2 {
        let mut dap = [0u8; 32];
        dap[0] = 0x10;
        dap[2..4].copy_from_slice(&count.to_le_bytes());
        dap[4..6].copy_from_slice(&buf_off.to_le_bytes());
        dap[6..8].copy_from_slice(&buf_seg.to_le_bytes());
        dap[8..16].copy_from_slice(&lba.to_le_bytes());
        // SAFETY: thunk_dap is ours; the BIOS reads it during the call only.
        unsafe { core::ptr::write_volatile(addr_of_mut!(thunk_dap), dap) };
        let r = int(
            0x13,
            Regs {
                eax: 0x4200,
                edx: u32::from(drive),
                esi: u32::from(dap_off),
                ds: dap_seg,
                ..Regs::default()
            },
        );
        if r.flags & 1 == 0 {
            // SAFETY: the BIOS wrote count*512 ≤ BOUNCE_LEN bytes; nothing else writes the
            // buffer until the next call, and the slice is copied out before that.
            let b = unsafe { &*addr_of!(bounce) };
            return Ok(&b[..usize::from(count) * 512]);
        }
        last = (r.eax >> 8) as u8;
        if attempt == 0 {
            int(
                0x13,
                Regs {
                    edx: u32::from(drive),
                    ..Regs::default()
                },
            );
        }
    }
    Err(last)
}

/// The boot drive, read in 32 KiB chunks through INT 13h AH=42h; cached as a `ReadAt` by the
/// shared `ufd_bootpath::dev::ChunkCache` (the NTFS walk does many small reads).
struct BiosDisk {
    drive: u8,
    size: u64,
    calls: u64,
}

const CHUNK: u64 = BOUNCE_LEN as u64;
const CHUNKS: usize = 64;

impl ChunkSource for BiosDisk {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_chunk(&mut self, start: u64, len: usize) -> Result<Vec<u8>, String> {
        let sectors = len.div_ceil(512).min(SECTORS_PER_CALL) as u16;
        self.calls += 1;
        let data = read_lba(self.drive, start / 512, sectors).map_err(|ah| {
            format!(
                "INT 13h AH=42h drive {:#04x} LBA {} x{sectors}: status AH={ah:#04x}",
                self.drive,
                start / 512
            )
        })?;
        Ok(data[..len].to_vec())
    }
}

/// Sector 0's MBR disk signature, read now through INT 13h.
fn disk_signature(drive: u8) -> Result<Option<u32>, u8> {
    let b = read_lba(drive, 0, 1)?;
    Ok((b[510] == 0x55 && b[511] == 0xAA)
        .then(|| u32::from_le_bytes([b[0x1B8], b[0x1B9], b[0x1BA], b[0x1BB]])))
}

// ---------------------------------------------------------------------------------------------
// platform

fn cpuid(leaf: u32) -> [u32; 4] {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 processor.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, 0) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The E820 type-1 region that holds `[a, b)`, if any.
fn usable(map: &[(u64, u64, u32)], a: u64, b: u64) -> bool {
    map.iter()
        .any(|&(base, len, ty)| ty == 1 && base <= a && base.saturating_add(len) >= b)
}

/// Set up the heap in the largest E820 RAM region above the stack (clipped to the 4 GiB the
/// page tables map). Returns (base, bytes).
fn init_heap(map: &[(u64, u64, u32)]) -> Option<(u64, u64)> {
    let best = map
        .iter()
        .filter(|e| e.2 == 1)
        .filter_map(|&(base, len, _)| {
            let start = base.max(STACK.1);
            let end = base.saturating_add(len).min(1 << 32);
            (end > start + (16 << 20)).then_some((start, end - start))
        })
        .max_by_key(|r| r.1)?;
    // SAFETY: before the first allocation; the region is RAM the BIOS does not use (E820
    // type 1), identity-mapped by entry.S.
    unsafe {
        *HEAP.state.get() = (best.0 as usize, (best.0 + best.1) as usize, 0);
    }
    Some(best)
}

// ---------------------------------------------------------------------------------------------

fn ext_api_text(cx: u16) -> String {
    let mut v = Vec::new();
    if cx & 1 != 0 {
        v.push("fixed disk access (42h-44h,47h,48h)");
    }
    if cx & 2 != 0 {
        v.push("drive locking and ejecting (45h,46h,48h,49h)");
    }
    if cx & 4 != 0 {
        v.push("EDD (48h,4Eh)");
    }
    if cx & 8 != 0 {
        v.push("64-bit extensions");
    }
    v.join(", ")
}

/// The rules the BIOS path cannot judge, with the reason as evidence.
fn device_verdicts(bi: &BootInfo, src: &str) -> Vec<Verdict> {
    let edd = match bi.edd3() {
        Some((bus, iface, _, _)) => format!("EDD 3.0 host bus {bus:?}, interface {iface:?}"),
        None if bi.edd_ok() => format!(
            "INT 13h AH=48h returned a {}-byte EDD buffer without the EDD 3.0 device path",
            bi.edd_size()
        ),
        None => "INT 13h AH=48h failed".to_string(),
    };
    let usb_iface = bi.edd3().is_some_and(|e| e.1 == "USB");
    let nj = |rule, why: String| Verdict::new(rule, Outcome::NotJudged, why, src);
    let mut v = vec![
        nj(
            policy::UFD_NONREMOVABLE,
            format!("the BIOS does not expose the removable bit: {edd}; INT 13h AH=48h info flags {:#06x} (bit 2 removable is set by SeaBIOS only for CD emulation, qemu.md §5)", bi.u16(BI_EDD + 2)),
        ),
        nj(
            policy::UFD_USB2,
            format!("INT 13h does not expose the USB device descriptor: {edd}"),
        ),
        nj(
            policy::UFD_MSC_CLASS,
            format!("INT 13h does not expose the USB interface descriptor: {edd}"),
        ),
        nj(
            policy::TOPO_NO_NESTED_HUB,
            format!("INT 13h does not expose the USB topology: {edd}"),
        ),
        nj(
            policy::TOPO_DEDICATED_CONTROLLER,
            format!("INT 13h does not expose the USB controller or the other devices on it: {edd}"),
        ),
    ];
    v.push(if usb_iface {
        Verdict::new(
            policy::HOST_USB_BOOT,
            Outcome::Pass,
            format!(
                "the BIOS booted this stand-in from drive {:#04x}, {edd}",
                bi.drive()
            ),
            src,
        )
    } else {
        nj(
            policy::HOST_USB_BOOT,
            format!(
                "the BIOS booted this stand-in from drive {:#04x}, but does not say over which bus: {edd}",
                bi.drive()
            ),
        )
    });
    v
}

#[no_mangle]
extern "C" fn rust_main(bootinfo: *const u8) -> ! {
    serial_init();
    // SAFETY: entry.S passes its `bootinfo` block, BOOTINFO_LEN bytes, filled in real mode.
    let bi = BootInfo {
        b: unsafe { core::ptr::read(bootinfo as *const [u8; BOOTINFO_LEN]) },
    };
    let ebda = u64::from(bi.u16(BI_EBDA)) << 4;
    let acpi = acpi_facts(ebda);
    if let Ok((port, slp)) = acpi.s5 {
        PM1A_S5.store(u32::from(port) | (u32::from(slp) << 16), Ordering::Relaxed);
    }
    let (entries, n) = bi.e820();
    let map = &entries[..n];
    let Some(heap) = init_heap(map) else {
        write_raw(report::PREFIX);
        write_raw("{\"event\":\"refused\",\"hop\":\"mbr\",\"evidence\":\"no E820 RAM region of 16 MiB above 2 MiB for the heap\"}\n");
        power_off();
    };
    let clock = Clock::new(&acpi.pm_timer);
    emit(
        &Obj::new()
            .str("event", "hello")
            .str("probe", "ufd-bios-probe")
            .str("version", env!("CARGO_PKG_VERSION"))
            .num("tsc_per_ms", clock.per_ms)
            .str("clock", &clock.reference)
            .finish(),
    );

    // platform
    let cpu = report::cpu_facts(&cpuid, None);
    let ram: u64 = map.iter().filter(|e| e.2 == 1).map(|e| e.1).sum();
    let bss_end = addr_of!(__bss_end) as u64;
    let a20 = match bi.u8(BI_A20) {
        1 => "on at hand-off",
        2 => "enabled by INT 15h AX=2401h",
        3 => "enabled by port 92h",
        _ => "could not be enabled",
    };
    emit(
        &report::platform_cpu(Obj::new().str("event", "platform"), &cpu)
            .str("firmware", "BIOS")
            .num("memory_bytes", ram)
            .num("e820_entries", map.len() as u64)
            .strs(
                "e820",
                map.iter()
                    .map(|(b, l, t)| format!("{b:#x}+{l:#x} type {t}"))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str),
            )
            .str("a20", a20)
            .str("heap", &format!("{:#x}+{:#x}", heap.0, heap.1))
            .bool("stack_in_ram", usable(map, STACK.0, STACK.1))
            .str("image_end", &hex(bss_end, 5))
            .str("ebda", &hex(ebda, 5))
            .bool("image_below_ebda", ebda == 0 || bss_end <= ebda)
            .str(
                "acpi_pm1a_cnt",
                &match acpi.s5 {
                    Ok((p, s)) => format!("{p:#x} (S5 SLP_TYP {s})"),
                    Err(e) => format!("none: {e}"),
                },
            )
            .finish(),
    );

    // what the BIOS handed over
    let drive = bi.drive();
    let size = if bi.edd_ok() && bi.bytes_per_sector() == 512 {
        bi.sectors().saturating_mul(512)
    } else {
        0
    };
    let last = (size >= 512).then(|| {
        let lba = size / 512 - 1;
        (lba, read_lba(drive, lba, 1).map(|b| bytes_hex(&b[..8])))
    });
    let oem: String = bi.b[BI_OEM..BI_OEM + 8]
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    let hidden = u64::from(bi.u32(BI_HIDDEN));
    let edd3 = bi.edd3();
    emit(
        &Obj::new()
            .str("event", "firmware-handoff")
            .str("loaded_at", "2000:0000")
            .str("boot_drive", &hex(u64::from(drive), 2))
            .num("bda_disks", bi.u8(BI_BDA_N))
            .str("boot_record_oem", &oem)
            .num("boot_record_hidden_sectors", hidden)
            .bool("int13_ext", bi.ext_present())
            .str(
                "int13_ext_version",
                &hex(u64::from(bi.u16(BI_EXT_AX) >> 8), 2),
            )
            .str("int13_ext_api", &hex(u64::from(bi.u16(BI_EXT_CX)), 4))
            .str("int13_ext_api_text", &ext_api_text(bi.u16(BI_EXT_CX)))
            .bool("edd", bi.edd_ok())
            .str("edd_status", &hex(u64::from(bi.u16(BI_EDD_AX) >> 8), 2))
            .num("edd_size", bi.edd_size())
            .str("edd_info_flags", &hex(u64::from(bi.u16(BI_EDD + 2)), 4))
            .num("edd_sectors", bi.sectors())
            .num("edd_bytes_per_sector", bi.bytes_per_sector())
            .opt_str("edd_host_bus", edd3.as_ref().map(|e| e.0.as_str()))
            .opt_str("edd_interface", edd3.as_ref().map(|e| e.1.as_str()))
            .opt_str(
                "edd_interface_path",
                edd3.as_ref().map(|e| bytes_hex(&e.2)).as_deref(),
            )
            .opt_str(
                "edd_device_path",
                edd3.as_ref().map(|e| bytes_hex(&e.3)).as_deref(),
            )
            .opt_num("last_lba", last.as_ref().map(|l| l.0))
            .bool(
                "last_sector_read",
                last.as_ref().is_some_and(|l| l.1.is_ok()),
            )
            .opt_str(
                "last_sector_error",
                last.as_ref()
                    .and_then(|l| l.1.as_ref().err())
                    .map(|ah| format!("INT 13h AH=42h status AH={ah:#04x}"))
                    .as_deref(),
            )
            .finish(),
    );

    // the boot device, as far as the BIOS shows it
    let disk_path = format!("INT 13h drive {}", hex(u64::from(drive), 2));
    let signature = if size > 0 {
        disk_signature(drive).ok().flatten()
    } else {
        None
    };
    emit(
        &Obj::new()
            .str("event", "boot-device")
            .str("disk_path", &disk_path)
            .bool("disk_found", size > 0 && bi.ext_present())
            .num("partition_offset", hidden * 512)
            .opt_str("controller", None)
            .opt_str("interface", edd3.as_ref().map(|e| e.1.as_str()))
            .raw("removable", "null")
            .num("block_size", bi.bytes_per_sector())
            .num("capacity_bytes", size)
            .opt_str(
                "disk_signature",
                signature.map(|s| format!("{s:#010x}")).as_deref(),
            )
            .finish(),
    );

    // the walk
    let opts = Options {
        boot_partition_offset: Some(hidden * 512),
        source: "firmware INT 13h".to_string(),
        ..Options::default()
    };
    let t = clock.ms();
    let mut disk = Disk::new(ChunkCache::new(
        BiosDisk {
            drive,
            size: if bi.ext_present() { size } else { 0 },
            calls: 0,
        },
        CHUNK,
        CHUNKS,
    ));
    let path = walk(&mut disk, &opts);
    for h in &path.hops {
        emit(&hop_line(h));
    }
    let walk_ms = clock.ms() - t;
    let reads = disk.into_inner().source.calls;
    emit(
        &Obj::new()
            .str("event", "disk-io")
            .str("via", "INT 13h AH=42h")
            .num("calls", reads)
            .num("bytes_per_call_max", BOUNCE_LEN as u64)
            .num("walk_ms", walk_ms)
            .finish(),
    );

    let src = "guest BIOS";
    let mut device = device_verdicts(
        &bi,
        &format!(
            "{src} INT 13h AH=41h/48h, drive {}",
            hex(u64::from(drive), 2)
        ),
    );
    device.extend(report::cpu_verdicts(&cpu, src));
    let verdicts = report::all_verdicts(device, &path);
    for v in &verdicts {
        emit(&verdict_line(v));
    }

    let outcome = match report::kernel_or_refusal(&path) {
        Ok(sig) => kernel_phase(&path, sig, drive, &disk_path, &clock),
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
    power_off()
}

/// The kernel's look for its boot disk, as far as BIOS can emulate it: sector 0 of the boot
/// drive read again (INT 13h, uncached) against the signature the BCD loader names, just
/// before the hand-off record.
fn kernel_phase(
    path: &BootPath,
    sig: u32,
    drive: u8,
    disk_path: &str,
    clock: &Clock,
) -> &'static str {
    let wait = report::kernel_wait(path);
    // Read before the hand-off record: the harness may unplug the stick on that record, and
    // an INT 13h read racing the unplug would make the outcome depend on timing.
    let start = clock.ms();
    let now = disk_signature(drive);
    let after = clock.ms() - start;
    emit(
        &report::handoff_kernel(sig, &wait, 0)
            .str(
                "late_surfacing",
                "UEFI probe only: SeaBIOS's INT 13h drive table is fixed at POST, a stick that re-enumerates after the hand-off cannot appear in it",
            )
            .finish(),
    );
    if now == Ok(Some(sig)) {
        emit(&report::kernel_surfaced(after, disk_path).finish());
        return report::OUTCOME_BOOTS;
    }
    let seen = match now {
        Ok(Some(s)) => format!("sector 0 of {disk_path} has disk signature {s:#010x}"),
        Ok(None) => format!("sector 0 of {disk_path} has no MBR signature"),
        Err(ah) => {
            format!("sector 0 of {disk_path} unreadable: INT 13h AH=42h status AH={ah:#04x}")
        }
    };
    emit(
        &report::kernel_stop(after)
            .str(
                "evidence",
                &format!("{seen}, the loader names {sig:#010x}; the BIOS drive table cannot change during the {} ms wait", wait.wait_ms),
            )
            .finish(),
    );
    report::OUTCOME_BUGCHECK_7B
}
