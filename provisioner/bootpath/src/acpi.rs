//! The firmware's ACPI tables as an OS loader reads them — RSDP → XSDT/RSDT → FADT (`FACP`) →
//! DSDT — for the two things the guest stand-ins need from them: the **ACPI PM timer** (their
//! clock reference) and the **S5 soft-off** register and sleep type (the BIOS stand-in's
//! power-off). One parser for both firmware paths: the UEFI probe finds the RSDP through the
//! EFI configuration table (ACPI 2.0 GUID), the BIOS stand-in by scanning the EBDA and
//! 0xE0000..0xFFFFF ([`find_rsdp`]); everything after that is here.
//!
//! Pure and allocation-free (the BIOS stand-in reads the tables before it has a heap): memory is
//! read through a caller-provided [`Mem`] (`phys address, buffer → readable?`), every table is
//! bounds-checked against its own header length and checksum-validated before any field is
//! used, and bad bytes are an [`Error`] naming the table, its physical address and the byte
//! offset — never a panic.
//!
//! Layouts are the ACPI specification's (6.4: §5.2.5.3 RSDP, §5.2.6 header, §5.2.7 RSDT,
//! §5.2.8 XSDT, §5.2.9 FADT, §5.2.3.2 Generic Address Structure, §4.8.3.3 PM timer, §7.4.2
//! `\_S5`; AML encodings §20.2). What QEMU puts there (verified in its source,
//! `hw/i386/acpi-build.c` `init_common_fadt_data`, and measured: `shared/reference/qemu.md`,
//! the BIOS stand-in's `acpi_pm1a_cnt` record): PM base 0x600 on q35 (PM1a_CNT 0x604, PM timer
//! 0x608), `pm_tmr` as a 32-bit I/O GAS, **no TMR_VAL_EXT** flag — the timer is 24 bits wide,
//! which matches `hw/acpi/core.c` `acpi_pm_tmr_get` returning `d & 0xffffff`.
//!
//! [`calibrate_tsc`] turns the PM timer into a TSC calibration that holds on a loaded host; its
//! doc comment says why, with the QEMU source it relies on.

use core::fmt;

/// Reads `buf.len()` bytes of physical memory at `phys` into `buf`; `false` when that range
/// cannot be read (not mapped, outside the firmware's memory map).
pub type Mem<'a> = &'a dyn Fn(u64, &mut [u8]) -> bool;

/// The ACPI PM timer's frequency (ACPI §4.8.3.3): 3.579545 MHz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// Largest table this parser accepts (a header length beyond it is corrupt; QEMU's DSDT is
/// ~8 KiB, real firmware's rarely above a few hundred KiB).
pub const MAX_TABLE_LEN: u32 = 4 << 20;

/// FADT flag TMR_VAL_EXT (bit 8): the PM timer is 32 bits wide, else 24.
pub const FADT_TMR_VAL_EXT: u32 = 1 << 8;

/// Generic Address Structure address space: system memory.
pub const SPACE_MEMORY: u8 = 0;
/// Generic Address Structure address space: system I/O.
pub const SPACE_IO: u8 = 1;

const HEADER_LEN: u32 = 36;
const CHUNK: usize = 256;

// ---------------------------------------------------------------------------------------------
// errors

/// What is wrong (see [`Error`] for where).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The memory reader refused `len` bytes at `address + offset`.
    Unreadable { len: u32 },
    /// No valid RSDP (signature `RSD PTR ` and checksums) in the areas searched.
    NoRsdp,
    /// The signature at the address is not the expected one.
    Signature { expected: [u8; 4], found: [u8; 4] },
    /// The bytes covered by a checksum do not sum to 0 (mod 256).
    Checksum { len: u32, sum: u8 },
    /// A header length outside `[min, MAX_TABLE_LEN]`.
    Length { length: u32, min: u32 },
    /// The table is not listed in the RSDT/XSDT.
    NotListed,
    /// A field's value cannot be used; `why` says how.
    Field {
        field: &'static str,
        why: &'static str,
    },
    /// The DSDT has no `_S5_` package.
    NoS5,
    /// An AML opcode this parser does not evaluate where `\_S5`'s SLP_TYPa should be.
    AmlOpcode { opcode: u8 },
}

/// An ACPI problem: the structure (`RSDP`, `XSDT`, `FACP`, ...), its physical address, the
/// byte offset inside it, and what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub table: &'static str,
    pub address: u64,
    pub offset: u64,
    pub kind: ErrorKind,
}

fn sig_text(f: &mut fmt::Formatter<'_>, s: &[u8; 4]) -> fmt::Result {
    for &b in s {
        if b.is_ascii_graphic() || b == b' ' {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ACPI {} at {:#x}, byte {:#x} (physical {:#x}): ",
            self.table,
            self.address,
            self.offset,
            self.address.wrapping_add(self.offset)
        )?;
        match self.kind {
            ErrorKind::Unreadable { len } => write!(f, "{len} bytes not readable"),
            ErrorKind::NoRsdp => write!(f, "no RSDP (\"RSD PTR \" with valid checksums)"),
            ErrorKind::Signature { expected, found } => {
                f.write_str("signature \"")?;
                sig_text(f, &found)?;
                f.write_str("\", expected \"")?;
                sig_text(f, &expected)?;
                f.write_str("\"")
            }
            ErrorKind::Checksum { len, sum } => {
                write!(
                    f,
                    "checksum over {len} bytes sums to {sum:#04x}, expected 0"
                )
            }
            ErrorKind::Length { length, min } => {
                write!(f, "length {length} outside {min}..={MAX_TABLE_LEN} bytes")
            }
            ErrorKind::NotListed => write!(f, "table not listed"),
            ErrorKind::Field { field, why } => write!(f, "{field} {why}"),
            ErrorKind::NoS5 => write!(f, "no \\_S5 package (`_S5_` PackageOp)"),
            ErrorKind::AmlOpcode { opcode } => write!(
                f,
                "AML opcode {opcode:#04x} where the \\_S5 SLP_TYPa integer should be"
            ),
        }
    }
}

fn err(table: &'static str, address: u64, offset: u64, kind: ErrorKind) -> Error {
    Error {
        table,
        address,
        offset,
        kind,
    }
}

/// Read `buf.len()` bytes at `address + offset`, or an `Unreadable` error.
fn read(
    mem: Mem<'_>,
    table: &'static str,
    address: u64,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    let unreadable = err(
        table,
        address,
        offset,
        ErrorKind::Unreadable {
            len: buf.len() as u32,
        },
    );
    let at = address.checked_add(offset).ok_or(unreadable)?;
    if at.checked_add(buf.len() as u64).is_none() || !mem(at, buf) {
        return Err(unreadable);
    }
    Ok(())
}

/// Sum (mod 256) of `len` bytes at `address`, read in chunks (no allocation).
fn byte_sum(mem: Mem<'_>, table: &'static str, address: u64, len: u32) -> Result<u8, Error> {
    let mut sum = 0u8;
    let mut buf = [0u8; CHUNK];
    let mut off = 0u64;
    while off < u64::from(len) {
        let n = (u64::from(len) - off).min(CHUNK as u64) as usize;
        read(mem, table, address, off, &mut buf[..n])?;
        sum = buf[..n].iter().fold(sum, |a, b| a.wrapping_add(*b));
        off += n as u64;
    }
    Ok(sum)
}

fn le16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// RSDP

/// The Root System Description Pointer (ACPI §5.2.5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// Where it was found.
    pub address: u64,
    /// 0 for ACPI 1.0 (RSDT only), 2 for ACPI 2.0+ (XSDT too).
    pub revision: u8,
    /// RsdtAddress (offset 16).
    pub rsdt: u32,
    /// XsdtAddress (offset 24) when `revision >= 2`, else 0.
    pub xsdt: u64,
}

/// The RSDP at `address`: signature, the ACPI 1.0 checksum over 20 bytes and, for revision
/// ≥ 2, the extended checksum over its `Length` bytes (as Linux's `acpi_tb_validate_rsdp`).
pub fn rsdp_at(mem: Mem<'_>, address: u64) -> Result<Rsdp, Error> {
    let t = "RSDP";
    let mut b = [0u8; 36];
    read(mem, t, address, 0, &mut b[..20])?;
    if &b[..8] != b"RSD PTR " {
        let mut found = [0u8; 4];
        found.copy_from_slice(&b[..4]);
        return Err(err(
            t,
            address,
            0,
            ErrorKind::Signature {
                expected: *b"RSD ",
                found,
            },
        ));
    }
    let sum = b[..20].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    if sum != 0 {
        return Err(err(t, address, 8, ErrorKind::Checksum { len: 20, sum }));
    }
    let revision = b[15];
    let rsdt = le32(&b, 16).unwrap_or(0);
    let mut xsdt = 0;
    if revision >= 2 {
        read(mem, t, address, 20, &mut b[20..36])?;
        let len = le32(&b, 20).unwrap_or(0);
        if !(36..=4096).contains(&len) {
            return Err(err(
                t,
                address,
                20,
                ErrorKind::Length {
                    length: len,
                    min: 36,
                },
            ));
        }
        let sum = byte_sum(mem, t, address, len)?;
        if sum != 0 {
            return Err(err(t, address, 32, ErrorKind::Checksum { len, sum }));
        }
        xsdt = le64(&b, 24).unwrap_or(0);
    }
    Ok(Rsdp {
        address,
        revision,
        rsdt,
        xsdt,
    })
}

/// The first valid RSDP on a 16-byte boundary in `areas` (`(base, length)`; a base of 0 is
/// skipped): for BIOS, the first KiB of the EBDA and 0xE0000..0xFFFFF (ACPI §5.2.5.1), see
/// [`bios_rsdp_areas`].
pub fn find_rsdp(mem: Mem<'_>, areas: &[(u64, u64)]) -> Result<Rsdp, Error> {
    let mut buf = [0u8; 16];
    for &(base, len) in areas.iter().filter(|a| a.0 != 0) {
        let mut off = 0u64;
        while off.saturating_add(20) <= len {
            let at = base.saturating_add(off);
            if mem(at, &mut buf[..8]) && &buf[..8] == b"RSD PTR " {
                if let Ok(r) = rsdp_at(mem, at) {
                    return Ok(r);
                }
            }
            off += 16;
        }
    }
    let first = areas.iter().find(|a| a.0 != 0).map_or(0, |a| a.0);
    Err(err("RSDP", first, 0, ErrorKind::NoRsdp))
}

/// Where a BIOS leaves the RSDP: the first KiB of the EBDA (`ebda` = its physical address from
/// the BDA word at 0x40E × 16; 0 when unknown) and the BIOS area 0xE0000..0xFFFFF.
pub fn bios_rsdp_areas(ebda: u64) -> [(u64, u64); 2] {
    [(ebda, 1024), (0xE0000, 0x20000)]
}

// ---------------------------------------------------------------------------------------------
// tables

/// A validated system description table: signature, address, length from its header (the
/// checksum over `length` bytes was 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    pub signature: [u8; 4],
    pub address: u64,
    pub length: u32,
    pub revision: u8,
}

fn sig_name(s: &[u8; 4]) -> &'static str {
    match s {
        b"XSDT" => "XSDT",
        b"RSDT" => "RSDT",
        b"FACP" => "FACP",
        b"DSDT" => "DSDT",
        _ => "table",
    }
}

/// The table at `address`: its header, the expected signature, a length in
/// `[min_len, MAX_TABLE_LEN]`, and the checksum over the whole table.
pub fn table_at(
    mem: Mem<'_>,
    address: u64,
    expected: &[u8; 4],
    min_len: u32,
) -> Result<Table, Error> {
    let t = sig_name(expected);
    let mut h = [0u8; HEADER_LEN as usize];
    read(mem, t, address, 0, &mut h)?;
    let mut signature = [0u8; 4];
    signature.copy_from_slice(&h[..4]);
    if &signature != expected {
        return Err(err(
            t,
            address,
            0,
            ErrorKind::Signature {
                expected: *expected,
                found: signature,
            },
        ));
    }
    let length = le32(&h, 4).unwrap_or(0);
    let min = min_len.max(HEADER_LEN);
    if length < min || length > MAX_TABLE_LEN {
        return Err(err(t, address, 4, ErrorKind::Length { length, min }));
    }
    let sum = byte_sum(mem, t, address, length)?;
    if sum != 0 {
        return Err(err(t, address, 9, ErrorKind::Checksum { len: length, sum }));
    }
    Ok(Table {
        signature,
        address,
        length,
        revision: h[8],
    })
}

/// Look `signature` up in one root table (entries of `entry` bytes after the header).
fn find_in_root(
    mem: Mem<'_>,
    root: &Table,
    entry: u32,
    signature: &[u8; 4],
    min_len: u32,
) -> Result<Table, Error> {
    let t = sig_name(&root.signature);
    let n = (root.length - HEADER_LEN) / entry;
    for i in 0..n {
        let off = u64::from(HEADER_LEN + i * entry);
        let mut e = [0u8; 8];
        read(mem, t, root.address, off, &mut e[..entry as usize])?;
        let addr = le64(&e, 0).unwrap_or(0);
        let mut sig = [0u8; 4];
        if addr == 0 || !mem(addr, &mut sig) {
            continue;
        }
        if &sig == signature {
            return table_at(mem, addr, signature, min_len);
        }
    }
    Err(err(t, root.address, 0, ErrorKind::NotListed))
}

/// The table with `signature` listed in the XSDT (ACPI 2.0+, when the RSDP names one and it
/// validates) or else the RSDT, at least `min_len` bytes long.
pub fn find_table(
    mem: Mem<'_>,
    rsdp: &Rsdp,
    signature: &[u8; 4],
    min_len: u32,
) -> Result<Table, Error> {
    let mut xsdt_err = None;
    if rsdp.xsdt != 0 {
        match table_at(mem, rsdp.xsdt, b"XSDT", HEADER_LEN) {
            Ok(x) => return find_in_root(mem, &x, 8, signature, min_len),
            Err(e) if rsdp.rsdt == 0 => return Err(e),
            Err(e) => xsdt_err = Some(e),
        }
    }
    if rsdp.rsdt == 0 {
        return Err(err(
            "RSDP",
            rsdp.address,
            16,
            ErrorKind::Field {
                field: "RsdtAddress",
                why: "is 0 and there is no XSDT",
            },
        ));
    }
    match table_at(mem, u64::from(rsdp.rsdt), b"RSDT", HEADER_LEN) {
        Ok(r) => find_in_root(mem, &r, 4, signature, min_len),
        // Both roots are broken: the XSDT's problem is the one an ACPI 2.0 OS would meet.
        Err(e) => Err(xsdt_err.unwrap_or(e)),
    }
}

// ---------------------------------------------------------------------------------------------
// FADT

/// A Generic Address Structure (ACPI §5.2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    pub space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

impl Gas {
    fn parse(b: &[u8], o: usize) -> Option<Gas> {
        Some(Gas {
            space: *b.get(o)?,
            bit_width: *b.get(o + 1)?,
            bit_offset: *b.get(o + 2)?,
            access_size: *b.get(o + 3)?,
            address: le64(b, o + 4)?,
        })
    }
}

/// The ACPI PM timer: its I/O port and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    pub port: u16,
    /// 24, or 32 when the FADT sets TMR_VAL_EXT.
    pub bits: u8,
    /// The FADT field the port came from: `X_PM_TMR_BLK` or `PM_TMR_BLK`.
    pub field: &'static str,
}

/// The FADT's first bytes (up to ACPI 6.x's 276), as validated by [`fadt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fadt {
    pub table: Table,
    bytes: [u8; FADT_MAX],
}

const FADT_MAX: usize = 276;
/// ACPI 1.0's FADT is 116 bytes (up to and including Flags).
const FADT_MIN: u32 = 116;

/// FADT field offsets (ACPI §5.2.9, Table 5.9).
mod off {
    pub const DSDT: usize = 40;
    pub const PM1A_CNT_BLK: usize = 64;
    pub const PM_TMR_BLK: usize = 76;
    pub const PM1_CNT_LEN: usize = 89;
    pub const PM_TMR_LEN: usize = 91;
    pub const FLAGS: usize = 112;
    pub const X_DSDT: usize = 140;
    pub const X_PM1A_CNT_BLK: usize = 172;
    pub const X_PM_TMR_BLK: usize = 208;
}

/// The FADT (signature `FACP`) from the RSDP's root table, validated.
pub fn fadt(mem: Mem<'_>, rsdp: &Rsdp) -> Result<Fadt, Error> {
    let table = find_table(mem, rsdp, b"FACP", FADT_MIN)?;
    let mut bytes = [0u8; FADT_MAX];
    let n = (table.length as usize).min(FADT_MAX);
    read(mem, "FACP", table.address, 0, &mut bytes[..n])?;
    Ok(Fadt { table, bytes })
}

impl Fadt {
    /// The field's bytes exist in this FADT's length.
    fn has(&self, offset: usize, len: usize) -> bool {
        offset + len <= (self.table.length as usize).min(FADT_MAX)
    }
    fn gas(&self, offset: usize) -> Option<Gas> {
        if self.has(offset, 12) {
            Gas::parse(&self.bytes, offset).filter(|g| g.address != 0)
        } else {
            None
        }
    }
    fn field_err(&self, offset: usize, field: &'static str, why: &'static str) -> Error {
        err(
            "FACP",
            self.table.address,
            offset as u64,
            ErrorKind::Field { field, why },
        )
    }

    /// Flags (offset 112).
    pub fn flags(&self) -> u32 {
        le32(&self.bytes, off::FLAGS).unwrap_or(0)
    }

    /// The DSDT's address: X_DSDT when present and non-zero, else DSDT.
    pub fn dsdt_address(&self) -> u64 {
        let x = if self.has(off::X_DSDT, 8) {
            le64(&self.bytes, off::X_DSDT).unwrap_or(0)
        } else {
            0
        };
        if x != 0 {
            x
        } else {
            u64::from(le32(&self.bytes, off::DSDT).unwrap_or(0))
        }
    }

    /// The PM timer: X_PM_TMR_BLK when present and non-zero (it must be in I/O space), else
    /// PM_TMR_BLK with PM_TMR_LEN = 4 (ACPI: 0 means no PM timer). 24 bits wide unless the
    /// flags have TMR_VAL_EXT.
    pub fn pm_timer(&self) -> Result<PmTimer, Error> {
        let bits = if self.flags() & FADT_TMR_VAL_EXT != 0 {
            32
        } else {
            24
        };
        if let Some(g) = self.gas(off::X_PM_TMR_BLK) {
            return match (g.space, u16::try_from(g.address)) {
                (SPACE_IO, Ok(port)) => Ok(PmTimer {
                    port,
                    bits,
                    field: "X_PM_TMR_BLK",
                }),
                (SPACE_IO, Err(_)) => Err(self.field_err(
                    off::X_PM_TMR_BLK,
                    "X_PM_TMR_BLK",
                    "is an I/O address above 0xFFFF",
                )),
                _ => Err(self.field_err(
                    off::X_PM_TMR_BLK,
                    "X_PM_TMR_BLK",
                    "is not in system I/O space (a memory-mapped PM timer is not read)",
                )),
            };
        }
        let port = le32(&self.bytes, off::PM_TMR_BLK).unwrap_or(0);
        let len = self.bytes[off::PM_TMR_LEN];
        match (port, len, u16::try_from(port)) {
            (0, _, _) => Err(self.field_err(
                off::PM_TMR_BLK,
                "PM_TMR_BLK",
                "is 0 and X_PM_TMR_BLK is absent: no PM timer",
            )),
            (_, l, _) if l != 4 => {
                Err(self.field_err(off::PM_TMR_LEN, "PM_TMR_LEN", "is not 4: no PM timer"))
            }
            (_, _, Ok(port)) => Ok(PmTimer {
                port,
                bits,
                field: "PM_TMR_BLK",
            }),
            (_, _, Err(_)) => Err(self.field_err(
                off::PM_TMR_BLK,
                "PM_TMR_BLK",
                "is an I/O address above 0xFFFF",
            )),
        }
    }

    /// The PM1a control register's I/O port: X_PM1a_CNT_BLK when present and non-zero (I/O
    /// space), else PM1a_CNT_BLK (PM1_CNT_LEN ≥ 2).
    pub fn pm1a_cnt_port(&self) -> Result<u16, Error> {
        if let Some(g) = self.gas(off::X_PM1A_CNT_BLK) {
            return match (g.space, u16::try_from(g.address)) {
                (SPACE_IO, Ok(p)) => Ok(p),
                _ => Err(self.field_err(
                    off::X_PM1A_CNT_BLK,
                    "X_PM1a_CNT_BLK",
                    "is not a system I/O port",
                )),
            };
        }
        let port = le32(&self.bytes, off::PM1A_CNT_BLK).unwrap_or(0);
        if self.bytes[off::PM1_CNT_LEN] < 2 {
            return Err(self.field_err(off::PM1_CNT_LEN, "PM1_CNT_LEN", "is below 2"));
        }
        match u16::try_from(port) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(self.field_err(off::PM1A_CNT_BLK, "PM1a_CNT_BLK", "is 0 or above 0xFFFF")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DSDT: \_S5

/// The DSDT the FADT names, validated.
pub fn dsdt(mem: Mem<'_>, fadt: &Fadt) -> Result<Table, Error> {
    table_at(mem, fadt.dsdt_address(), b"DSDT", HEADER_LEN)
}

/// `\_S5`'s SLP_TYPa (3 bits) from the DSDT: the `Name (_S5, Package () {a, b, ...})` object
/// (NameString `_S5_`, PackageOp 0x12, PkgLength, NumElements, then the first element as
/// ZeroOp, OneOp or a Byte/Word/DWord constant; ACPI §7.4.2.4 and §20.2.3). The DSDT is
/// searched for the byte pattern, not interpreted: firmware that computes `_S5` in a method
/// is not supported (QEMU and SeaBIOS declare it as a plain package).
pub fn s5_sleep_type(mem: Mem<'_>, dsdt: &Table) -> Result<u8, Error> {
    const PAT: &[u8; 5] = b"_S5_\x12";
    let len = u64::from(dsdt.length);
    let mut buf = [0u8; CHUNK];
    let mut pos = u64::from(HEADER_LEN);
    let mut found = None;
    while pos < len && found.is_none() {
        let n = (len - pos).min(CHUNK as u64) as usize;
        read(mem, "DSDT", dsdt.address, pos, &mut buf[..n])?;
        found = buf[..n]
            .windows(PAT.len())
            .position(|w| w == PAT)
            .map(|i| pos + i as u64);
        if pos + n as u64 >= len {
            break;
        }
        // Overlap so a pattern across two chunks is seen.
        pos += (n - (PAT.len() - 1)) as u64;
    }
    let at = found.ok_or(err("DSDT", dsdt.address, 0, ErrorKind::NoS5))?;
    // PkgLength (1..4 bytes), NumElements, the element (≤ 5 bytes).
    let start = at + PAT.len() as u64;
    let avail = (len - start).min(11) as usize;
    let mut p = [0u8; 11];
    read(mem, "DSDT", dsdt.address, start, &mut p[..avail])?;
    let p = &p[..avail];
    let short = err(
        "DSDT",
        dsdt.address,
        start,
        ErrorKind::Field {
            field: "\\_S5 package",
            why: "ends before its first element",
        },
    );
    let lead = *p.first().ok_or(short)?;
    let el = 1 + usize::from(lead >> 6) + 1; // PkgLength bytes, NumElements
    let el_off = start + el as u64;
    let value = match *p.get(el).ok_or(short)? {
        0x00 => 0,
        0x01 => 1,
        0x0A => u32::from(*p.get(el + 1).ok_or(short)?),
        0x0B => u32::from(le16(p, el + 1).ok_or(short)?),
        0x0C => le32(p, el + 1).ok_or(short)?,
        opcode => {
            return Err(err(
                "DSDT",
                dsdt.address,
                el_off,
                ErrorKind::AmlOpcode { opcode },
            ))
        }
    };
    Ok((value & 7) as u8)
}

/// The S5 soft-off registers: the PM1a control port and `\_S5`'s SLP_TYPa. An OS writes
/// `SLP_TYP << 10 | SLP_EN (bit 13)` to the port (ACPI §4.8.3.2.1).
pub fn s5(mem: Mem<'_>, fadt: &Fadt) -> Result<(u16, u8), Error> {
    let port = fadt.pm1a_cnt_port()?;
    let slp = s5_sleep_type(mem, &dsdt(mem, fadt)?)?;
    Ok((port, slp))
}

// ---------------------------------------------------------------------------------------------
// TSC calibration against the PM timer

/// Ticks from `prev` to `now` of a `bits`-wide up-counter (one wrap at most).
pub fn pm_delta(prev: u32, now: u32, bits: u8) -> u32 {
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    now.wrapping_sub(prev) & mask
}

/// A TSC calibration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calibration {
    /// TSC ticks per millisecond.
    pub tsc_per_ms: u64,
    /// PM timer ticks the measurement spanned.
    pub pm_ticks: u64,
    /// TSC ticks between the two reference points.
    pub tsc_ticks: u64,
    /// How far the two reference points can be off, in parts per million of the span: the
    /// TSC width of the rdtsc/PM-read/rdtsc brackets they were taken in.
    pub uncertainty_ppm: u64,
}

/// Why [`calibrate_tsc`] found no usable calibration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationError {
    /// The PM timer did not change while the TSC advanced `tsc` ticks (no timer at the port).
    Stuck { tsc: u64 },
    /// The result is outside 10 MHz..100 GHz: the port is not a 3.58 MHz timer.
    Implausible { tsc_per_ms: u64 },
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibrationError::Stuck { tsc } => write!(
                f,
                "the PM timer did not advance while the TSC advanced {tsc} ticks"
            ),
            CalibrationError::Implausible { tsc_per_ms } => write!(
                f,
                "{tsc_per_ms} TSC ticks per PM-timer millisecond is outside 10 MHz..100 GHz"
            ),
        }
    }
}

/// A PM-timer reading paired with the TSC: the best (narrowest) of `PAIR_TRIES`
/// rdtsc / PM read / rdtsc brackets. Returns (TSC at the bracket's middle, PM value, width).
fn paired(rdtsc: &dyn Fn() -> u64, read_pm: &dyn Fn() -> u32) -> (u64, u32, u64) {
    const PAIR_TRIES: usize = 8;
    let mut best = (0, 0, u64::MAX);
    for _ in 0..PAIR_TRIES {
        let a = rdtsc();
        let p = read_pm();
        let b = rdtsc();
        let w = b.wrapping_sub(a);
        if w < best.2 {
            best = (a.wrapping_add(w / 2), p, w);
        }
    }
    best
}

/// TSC without a PM-timer change after which the timer counts as stuck (≥ 0.1 s at 10 GHz).
const STUCK_TSC: u64 = 1 << 30;

fn calibrate_once(
    rdtsc: &dyn Fn() -> u64,
    read_pm: &dyn Fn() -> u32,
    bits: u8,
    window_ticks: u32,
) -> Result<Calibration, CalibrationError> {
    let (t0, p0, w0) = paired(rdtsc, read_pm);
    let mut last = p0;
    let mut ticks = 0u64;
    let mut since_change = rdtsc();
    while ticks < u64::from(window_ticks) {
        let p = read_pm();
        let d = pm_delta(last, p, bits);
        if d == 0 {
            let now = rdtsc();
            if now.wrapping_sub(since_change) > STUCK_TSC {
                return Err(CalibrationError::Stuck {
                    tsc: now.wrapping_sub(since_change),
                });
            }
        } else {
            since_change = rdtsc();
        }
        ticks += u64::from(d);
        last = p;
    }
    let (t1, p1, w1) = paired(rdtsc, read_pm);
    ticks += u64::from(pm_delta(last, p1, bits));
    let tsc = t1.wrapping_sub(t0);
    let tsc_per_ms = (u128::from(tsc) * u128::from(PM_TIMER_HZ) / (u128::from(ticks) * 1000))
        .min(u128::from(u64::MAX)) as u64;
    if !(10_000..=100_000_000).contains(&tsc_per_ms) {
        return Err(CalibrationError::Implausible { tsc_per_ms });
    }
    let uncertainty_ppm = ((u128::from(w0) + u128::from(w1)) * 1_000_000 / u128::from(tsc.max(1)))
        .min(u128::from(u64::MAX)) as u64;
    Ok(Calibration {
        tsc_per_ms,
        pm_ticks: ticks,
        tsc_ticks: tsc,
        uncertainty_ppm,
    })
}

/// Calibrate the TSC against the ACPI PM timer: TSC ticks across at least `window_ticks` PM
/// ticks (busy-polling the timer so every wrap of its `bits`-wide counter is seen), with both
/// ends read inside a tight rdtsc/PM/rdtsc bracket. Up to three attempts; the first within
/// 500 ppm is taken, else the one with the smallest uncertainty.
///
/// Why this holds on a loaded host where a firmware stall does not: a stall-based calibration
/// (`rdtsc; Stall(10 ms); rdtsc`) counts every moment the vCPU thread is descheduled between
/// the stall's last timer read and the second rdtsc as stall time, so the ratio comes out too
/// large and the guest's milliseconds run slow (seen: 3 287 291 ticks/ms for a ~2.6 GHz TSC).
/// Here both clocks are read back to back and the span between the two reference points
/// does not matter, because under QEMU both clocks follow host time while the VM runs,
/// whether or not the vCPU is scheduled (verified in QEMU's source):
/// - TCG RDTSC: `target/i386/tcg/misc_helper.c` `helper_rdtsc` → `cpu_get_tsc(env)` +
///   `tsc_offset`; `cpu_get_tsc` (`hw/i386/pc.c`, later `target/i386/helper.c`) →
///   `cpus_get_elapsed_ticks()` → `cpu_get_ticks()` (`softmmu/cpu-timers.c`): the **host**
///   TSC (`cpu_get_host_ticks()`) plus an offset, advancing while the VM runs.
/// - PM timer: `hw/acpi/core.c` `acpi_pm_tmr_get` = `acpi_pm_tmr_get_clock() & 0xffffff`,
///   `acpi_pm_tmr_get_clock` = `muldiv64(qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL),
///   PM_TIMER_FREQUENCY, NANOSECONDS_PER_SECOND)`; without icount `QEMU_CLOCK_VIRTUAL` is
///   `cpu_get_clock()` = host monotonic time (`get_clock()`) plus an offset, advancing while
///   the VM runs. (Both stop together when the VM is paused: `cpu_disable_ticks`.)
/// - KVM: RDTSC is the hardware TSC (not exited), the PM timer is the same QEMU device read
///   through an I/O exit: both are host time again; an exit's latency only widens the
///   bracket, which `uncertainty_ppm` measures.
pub fn calibrate_tsc(
    rdtsc: &dyn Fn() -> u64,
    read_pm: &dyn Fn() -> u32,
    bits: u8,
    window_ticks: u32,
) -> Result<Calibration, CalibrationError> {
    let mut best: Option<Calibration> = None;
    for _ in 0..3 {
        let c = calibrate_once(rdtsc, read_pm, bits, window_ticks)?;
        if c.uncertainty_ppm <= 500 {
            return Ok(c);
        }
        if best.is_none_or(|b| c.uncertainty_ppm < b.uncertainty_ppm) {
            best = Some(c);
        }
    }
    best.ok_or(CalibrationError::Stuck { tsc: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::Cell;
    use rstest::rstest;

    // -----------------------------------------------------------------------------------------
    // synthetic physical memory

    /// Physical memory [BASE, BASE + len): reads outside fail.
    struct Phys {
        base: u64,
        bytes: Vec<u8>,
    }

    const BASE: u64 = 0xE0000;
    const RSDP: u64 = 0xF5A40;
    const XSDT: u64 = 0xE1000;
    const RSDT: u64 = 0xE1100;
    const FACP: u64 = 0xE2000;
    const DSDT: u64 = 0xE3000;
    const OTHER: u64 = 0xE1800;

    impl Phys {
        fn new() -> Phys {
            Phys {
                base: BASE,
                bytes: vec![0; 0x20000],
            }
        }
        fn reader(&self) -> impl Fn(u64, &mut [u8]) -> bool + '_ {
            move |a, buf| {
                let Some(o) = a.checked_sub(self.base) else {
                    return false;
                };
                let Ok(o) = usize::try_from(o) else {
                    return false;
                };
                match self.bytes.get(o..o + buf.len()) {
                    Some(s) => {
                        buf.copy_from_slice(s);
                        true
                    }
                    None => false,
                }
            }
        }
        fn put(&mut self, at: u64, b: &[u8]) {
            let o = (at - self.base) as usize;
            self.bytes[o..o + b.len()].copy_from_slice(b);
        }
        fn get(&self, at: u64) -> u8 {
            self.bytes[(at - self.base) as usize]
        }
        fn set(&mut self, at: u64, v: u8) {
            self.bytes[(at - self.base) as usize] = v;
        }
    }

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn table(sig: &[u8; 4], rev: u8, body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 36];
        t[..4].copy_from_slice(sig);
        t[4..8].copy_from_slice(&((36 + body.len()) as u32).to_le_bytes());
        t[8] = rev;
        t[10..16].copy_from_slice(b"BOCHS ");
        t.extend_from_slice(body);
        fix_checksum(&mut t, 9);
        t
    }

    fn gas(space: u8, width: u8, addr: u64) -> [u8; 12] {
        let mut g = [0u8; 12];
        g[0] = space;
        g[1] = width;
        g[3] = if width == 32 { 3 } else { 0 };
        g[4..].copy_from_slice(&addr.to_le_bytes());
        g
    }

    /// A FADT like QEMU's (rev 3, 244 bytes; PM base `pm`), or ACPI 1.0's 116 bytes.
    fn fadt_bytes(rev: u8, pm: u16, flags: u32, x_tmr: Option<[u8; 12]>) -> Vec<u8> {
        let len = if rev >= 3 { 244 } else { 116 };
        let mut b = vec![0u8; len - 36];
        let put32 =
            |b: &mut Vec<u8>, o: usize, v: u32| b[o - 36..o - 32].copy_from_slice(&v.to_le_bytes());
        put32(&mut b, 40, DSDT as u32);
        put32(&mut b, 56, u32::from(pm));
        put32(&mut b, 64, u32::from(pm) + 4);
        put32(&mut b, 76, u32::from(pm) + 8);
        b[88 - 36] = 4;
        b[89 - 36] = 2;
        b[91 - 36] = 4;
        put32(&mut b, 112, flags);
        if rev >= 3 {
            b[140 - 36..148 - 36].copy_from_slice(&DSDT.to_le_bytes());
            b[172 - 36..184 - 36].copy_from_slice(&gas(SPACE_IO, 16, u64::from(pm) + 4));
            let x = x_tmr.unwrap_or(gas(SPACE_IO, 32, u64::from(pm) + 8));
            b[208 - 36..220 - 36].copy_from_slice(&x);
        }
        table(b"FACP", rev, &b)
    }

    /// QEMU's DSDT tail: `Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })` after filler.
    fn dsdt_bytes(s5: &[u8]) -> Vec<u8> {
        let mut body = vec![0x5Bu8; 300]; // ExtOpPrefix filler, spans a chunk boundary
        body.extend_from_slice(b"\x08_S5_\x12");
        body.extend_from_slice(s5);
        table(b"DSDT", 1, &body)
    }

    fn rsdp_bytes(rev: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; if rev >= 2 { 36 } else { 20 }];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"BOCHS ");
        r[15] = rev;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut r[..20], 8);
        if rev >= 2 {
            r[20..24].copy_from_slice(&36u32.to_le_bytes());
            r[24..32].copy_from_slice(&xsdt.to_le_bytes());
            fix_checksum(&mut r, 32);
        }
        r
    }

    /// q35-like: RSDP rev 2 → XSDT (another table, then FACP) and RSDT → FACP → DSDT.
    fn q35(flags: u32, x_tmr: Option<[u8; 12]>) -> Phys {
        let mut m = Phys::new();
        m.put(RSDP, &rsdp_bytes(2, RSDT as u32, XSDT));
        m.put(OTHER, &table(b"APIC", 1, &[0; 8]));
        let mut x = Vec::new();
        x.extend_from_slice(&OTHER.to_le_bytes());
        x.extend_from_slice(&FACP.to_le_bytes());
        m.put(XSDT, &table(b"XSDT", 1, &x));
        let mut r = Vec::new();
        r.extend_from_slice(&(OTHER as u32).to_le_bytes());
        r.extend_from_slice(&(FACP as u32).to_le_bytes());
        m.put(RSDT, &table(b"RSDT", 1, &r));
        m.put(FACP, &fadt_bytes(3, 0x600, flags, x_tmr));
        m.put(DSDT, &dsdt_bytes(&[0x06, 0x04, 0x00, 0x00, 0x00, 0x00]));
        m
    }

    /// pc-like (ACPI 1.0): RSDP rev 0 → RSDT → FADT rev 1 (116 bytes), PM base 0xB000.
    fn pc() -> Phys {
        let mut m = Phys::new();
        m.put(RSDP, &rsdp_bytes(0, RSDT as u32, 0));
        m.put(RSDT, &table(b"RSDT", 1, &(FACP as u32).to_le_bytes()));
        m.put(FACP, &fadt_bytes(1, 0xB000, 0, None));
        m.put(
            DSDT,
            &dsdt_bytes(&[0x0A, 0x04, 0x0A, 0x00, 0x0A, 0x00, 0x00, 0x00]),
        );
        m
    }

    #[test]
    fn q35_layout_gives_the_pm_timer_and_s5() {
        let m = q35(0, None);
        let mem = m.reader();
        let r = find_rsdp(&mem, &bios_rsdp_areas(0)).unwrap();
        assert_eq!((r.address, r.revision, r.xsdt), (RSDP, 2, XSDT));
        assert_eq!(rsdp_at(&mem, RSDP), Ok(r));
        let f = fadt(&mem, &r).unwrap();
        assert_eq!(f.table.address, FACP);
        assert_eq!(
            f.pm_timer(),
            Ok(PmTimer {
                port: 0x608,
                bits: 24,
                field: "X_PM_TMR_BLK"
            })
        );
        assert_eq!(f.dsdt_address(), DSDT);
        assert_eq!(s5(&mem, &f), Ok((0x604, 0)));
    }

    #[test]
    fn pc_acpi1_layout_uses_the_legacy_fields() {
        let m = pc();
        let mem = m.reader();
        let r = find_rsdp(&mem, &bios_rsdp_areas(0)).unwrap();
        assert_eq!((r.revision, r.xsdt), (0, 0));
        let f = fadt(&mem, &r).unwrap();
        assert_eq!(
            f.pm_timer(),
            Ok(PmTimer {
                port: 0xB008,
                bits: 24,
                field: "PM_TMR_BLK"
            })
        );
        assert_eq!(s5(&mem, &f), Ok((0xB004, 0)));
    }

    #[test]
    fn tmr_val_ext_makes_the_timer_32_bits() {
        let m = q35(FADT_TMR_VAL_EXT, None);
        let mem = m.reader();
        let f = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap();
        assert_eq!(f.pm_timer().unwrap().bits, 32);
    }

    #[rstest]
    #[case::memory_space(gas(SPACE_MEMORY, 32, 0xFED0_00F0), "not in system I/O space")]
    #[case::io_above_64k(gas(SPACE_IO, 32, 0x1_0008), "above 0xFFFF")]
    fn x_pm_tmr_blk_must_be_an_io_port(#[case] x: [u8; 12], #[case] why: &str) {
        let m = q35(0, Some(x));
        let mem = m.reader();
        let f = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap();
        let e = f.pm_timer().unwrap_err();
        assert_eq!((e.table, e.address, e.offset), ("FACP", FACP, 208));
        assert!(format!("{e}").contains(why), "{e}");
    }

    #[test]
    fn zero_x_pm_tmr_blk_falls_back_to_pm_tmr_blk_and_its_length() {
        let mut m = q35(0, Some([0; 12]));
        {
            let mem = m.reader();
            let f = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap();
            assert_eq!(f.pm_timer().unwrap().field, "PM_TMR_BLK");
        }
        // PM_TMR_LEN 0: no PM timer.
        let mut t = fadt_bytes(3, 0x600, 0, Some([0; 12]));
        t[91] = 0;
        fix_checksum(&mut t, 9);
        m.put(FACP, &t);
        let mem = m.reader();
        let f = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap();
        let e = f.pm_timer().unwrap_err();
        assert_eq!(e.offset, 91);
        assert_eq!(
            format!("{e}"),
            "ACPI FACP at 0xe2000, byte 0x5b (physical 0xe205b): PM_TMR_LEN is not 4: no PM timer"
        );
    }

    #[test]
    fn bad_checksums_are_errors_with_their_address() {
        let mut m = q35(0, None);
        m.set(FACP + 100, m.get(FACP + 100).wrapping_add(1));
        let mem = m.reader();
        let e = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap_err();
        assert_eq!(
            (e.table, e.address, e.kind),
            ("FACP", FACP, ErrorKind::Checksum { len: 244, sum: 1 })
        );
        assert_eq!(
            format!("{e}"),
            "ACPI FACP at 0xe2000, byte 0x9 (physical 0xe2009): checksum over 244 bytes sums to 0x01, expected 0"
        );
        // The RSDP's own checksums.
        let mut m = q35(0, None);
        m.set(RSDP + 12, 0x55);
        let mem = m.reader();
        assert!(matches!(
            rsdp_at(&mem, RSDP).unwrap_err().kind,
            ErrorKind::Checksum { len: 20, .. }
        ));
        assert_eq!(
            find_rsdp(&mem, &bios_rsdp_areas(0)).unwrap_err().kind,
            ErrorKind::NoRsdp
        );
        let mut m = q35(0, None);
        m.set(RSDP + 25, 0x55); // XsdtAddress: only the extended checksum covers it
        let mem = m.reader();
        assert!(matches!(
            rsdp_at(&mem, RSDP).unwrap_err().kind,
            ErrorKind::Checksum { len: 36, .. }
        ));
    }

    #[test]
    fn a_broken_xsdt_falls_back_to_the_rsdt() {
        let mut m = q35(0, None);
        m.set(XSDT + 40, 0xAA);
        let mem = m.reader();
        let r = rsdp_at(&mem, RSDP).unwrap();
        assert_eq!(fadt(&mem, &r).unwrap().table.address, FACP);
        // Without an RSDT the XSDT's error is reported.
        let mut r0 = r;
        r0.rsdt = 0;
        let e = fadt(&mem, &r0).unwrap_err();
        assert_eq!((e.table, e.address), ("XSDT", XSDT));
    }

    #[test]
    fn unreadable_and_absurd_lengths_are_errors() {
        let mut m = q35(0, None);
        let mut t = fadt_bytes(3, 0x600, 0, None);
        t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        m.put(FACP, &t);
        let mem = m.reader();
        let r = rsdp_at(&mem, RSDP).unwrap();
        let e = fadt(&mem, &r).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::Length {
                length: u32::MAX,
                min: 116
            }
        );
        // A table past the end of readable memory.
        let mut m = q35(0, None);
        m.put(XSDT, &table(b"XSDT", 1, &0x1_0000_0000u64.to_le_bytes()));
        let mem = m.reader();
        let e = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap_err();
        assert_eq!((e.table, e.kind), ("XSDT", ErrorKind::NotListed));
        let e = rsdp_at(&mem, 0x10_0000).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreadable { len: 20 });
        assert_eq!(
            format!("{e}"),
            "ACPI RSDP at 0x100000, byte 0x0 (physical 0x100000): 20 bytes not readable"
        );
    }

    #[rstest]
    #[case::zero(&[0x06, 0x04, 0x00, 0x00, 0x00, 0x00], Ok(0))]
    #[case::one(&[0x06, 0x04, 0x01, 0x00, 0x00, 0x00], Ok(1))]
    #[case::byte(&[0x0A, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00], Ok(5))]
    #[case::word(&[0x08, 0x02, 0x0B, 0x07, 0x00, 0x00], Ok(7))]
    #[case::dword_masked(&[0x08, 0x02, 0x0C, 0x0E, 0x00, 0x00, 0x00], Ok(6))]
    #[case::two_byte_pkglength(&[0x46, 0x00, 0x04, 0x0A, 0x03], Ok(3))]
    #[case::method_call(&[0x06, 0x04, 0x14], Err(ErrorKind::AmlOpcode { opcode: 0x14 }))]
    fn s5_package_first_element(#[case] pkg: &[u8], #[case] want: Result<u8, ErrorKind>) {
        let mut m = q35(0, None);
        m.put(DSDT, &dsdt_bytes(pkg));
        let mem = m.reader();
        let f = fadt(&mem, &rsdp_at(&mem, RSDP).unwrap()).unwrap();
        let d = dsdt(&mem, &f).unwrap();
        assert_eq!(s5_sleep_type(&mem, &d).map_err(|e| e.kind), want);
    }

    #[test]
    fn s5_missing_or_cut_short() {
        let mut m = q35(0, None);
        m.put(DSDT, &table(b"DSDT", 1, &[0x5B; 600]));
        {
            let mem = m.reader();
            let d = table_at(&mem, DSDT, b"DSDT", 36).unwrap();
            assert_eq!(s5_sleep_type(&mem, &d).unwrap_err().kind, ErrorKind::NoS5);
        }
        // The package at the very end of the table.
        let mut body = vec![0x5Bu8; 10];
        body.extend_from_slice(b"_S5_\x12\x06");
        m.put(DSDT, &table(b"DSDT", 1, &body));
        let mem = m.reader();
        let d = table_at(&mem, DSDT, b"DSDT", 36).unwrap();
        let e = s5_sleep_type(&mem, &d).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Field { .. }), "{e}");
    }

    #[test]
    fn no_byte_change_or_truncation_panics() {
        // Every single-byte change of every structure, and memory cut at every table edge:
        // errors or results, never a panic.
        let base = q35(0, None);
        let spans = [
            (RSDP, 36u64),
            (XSDT, 52),
            (RSDT, 44),
            (FACP, 244),
            (DSDT, 348),
        ];
        for &(at, len) in &spans {
            for i in 0..len {
                for v in [0x00u8, 0xFF, 0x7F] {
                    let mut m = Phys {
                        base: base.base,
                        bytes: base.bytes.clone(),
                    };
                    m.set(at + i, v);
                    let mem = m.reader();
                    let _ = rsdp_at(&mem, RSDP).and_then(|r| {
                        let f = fadt(&mem, &r)?;
                        let _ = f.pm_timer();
                        s5(&mem, &f)
                    });
                }
            }
        }
        for cut in [RSDP + 30, XSDT + 40, FACP + 200, DSDT + 320, DSDT + 10] {
            let m = Phys {
                base: base.base,
                bytes: base.bytes[..(cut - base.base) as usize].to_vec(),
            };
            let mem = m.reader();
            let r = rsdp_at(&mem, RSDP).and_then(|r| {
                let f = fadt(&mem, &r)?;
                let _ = f.pm_timer();
                s5(&mem, &f)
            });
            assert!(r.is_err(), "cut at {cut:#x}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // calibration against a simulated host clock

    #[rstest]
    #[case::bits24_wrap(0xFF_FFF0, 0x20, 24, 0x30)]
    #[case::bits24_plain(0x10, 0x30, 24, 0x20)]
    #[case::bits32_wrap(0xFFFF_FFF0, 0x20, 32, 0x30)]
    #[case::bits24_high_garbage(0xFFFF_FFF0, 0xFF00_0020, 24, 0x30)]
    fn pm_delta_wraps(#[case] a: u32, #[case] b: u32, #[case] bits: u8, #[case] want: u32) {
        assert_eq!(pm_delta(a, b, bits), want);
    }

    /// A host whose time (ns) advances by `cost_ns` per clock read, plus a deschedule of
    /// `gap_ns` before read number `gap_at`; TSC at `ghz_milli` MHz, PM timer at 3.579545 MHz
    /// from `pm_start`, `bits` wide — both derived from host time, as QEMU does.
    struct Host {
        ns: Cell<u64>,
        reads: Cell<u64>,
        cost_ns: u64,
        gaps: Vec<(u64, u64)>,
        tsc_khz: u64,
        pm_start: u64,
        bits: u8,
    }

    impl Host {
        fn tick(&self) -> u64 {
            let r = self.reads.get() + 1;
            self.reads.set(r);
            let gap: u64 = self.gaps.iter().filter(|g| g.0 == r).map(|g| g.1).sum();
            let t = self.ns.get() + self.cost_ns + gap;
            self.ns.set(t);
            t
        }
        fn rdtsc(&self) -> u64 {
            let t = self.tick();
            (u128::from(t) * u128::from(self.tsc_khz) / 1_000_000) as u64
        }
        fn pm(&self) -> u32 {
            let t = self.tick();
            let v =
                self.pm_start + (u128::from(t) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u64;
            let mask = if self.bits == 32 {
                u64::from(u32::MAX)
            } else {
                (1 << self.bits) - 1
            };
            (v & mask) as u32
        }
    }

    fn host(gaps: Vec<(u64, u64)>, pm_start: u64, bits: u8) -> Host {
        Host {
            ns: Cell::new(0),
            reads: Cell::new(0),
            cost_ns: 700,
            gaps,
            tsc_khz: 2_600_000,
            pm_start,
            bits,
        }
    }

    const WINDOW_100MS: u32 = 357_955;

    #[rstest]
    #[case::quiet(vec![], 0, 24)]
    #[case::descheduled_mid_window(vec![(5_000, 30_000_000), (9_000, 4_000_000)], 0, 24)]
    #[case::descheduled_in_first_bracket(vec![(2, 8_000_000)], 0, 24)]
    #[case::descheduled_before_the_window(vec![(25, 50_000_000)], 0, 24)]
    #[case::wraps_24(vec![], 0xFF_F000, 24)]
    #[case::wraps_32(vec![], 0xFFFF_F000, 32)]
    fn calibration_tracks_host_time(
        #[case] gaps: Vec<(u64, u64)>,
        #[case] pm_start: u64,
        #[case] bits: u8,
    ) {
        let h = host(gaps, pm_start, bits);
        let c = calibrate_tsc(&|| h.rdtsc(), &|| h.pm(), bits, WINDOW_100MS).unwrap();
        // 2.6 GHz: 2 600 000 ticks/ms, within 0.05 %.
        assert!(
            c.tsc_per_ms.abs_diff(2_600_000) < 1_300,
            "{c:?} (host reads {})",
            h.reads.get()
        );
        assert!(c.pm_ticks >= u64::from(WINDOW_100MS));
        assert!(c.uncertainty_ppm <= 500, "{c:?}");
    }

    #[test]
    fn a_stall_calibration_is_what_a_deschedule_breaks() {
        // The old method: rdtsc; stall 10 ms (polls the PM timer); rdtsc — with 2.7 ms of
        // deschedule after the stall's last poll it reads 27 % fast, as seen in late-35s.
        let h = host(vec![], 0, 24);
        let a = h.rdtsc();
        let p0 = h.pm();
        while pm_delta(p0, h.pm(), 24) < 35_796 {}
        h.ns.set(h.ns.get() + 2_700_000);
        let naive = (h.rdtsc() - a) / 10;
        assert!(naive > 3_200_000, "{naive}");
        // The same deschedule inside the PM-timer calibration's window costs nothing.
        let h = host(vec![(1_000, 2_700_000)], 0, 24);
        let c = calibrate_tsc(&|| h.rdtsc(), &|| h.pm(), 24, WINDOW_100MS).unwrap();
        assert!(c.tsc_per_ms.abs_diff(2_600_000) < 1_300, "{c:?}");
    }

    #[test]
    fn a_wide_bracket_in_every_attempt_is_reported_not_hidden() {
        // Every PM read is followed by 1 ms off the CPU: no narrow bracket exists. The result
        // is still returned (the best of three attempts), with its uncertainty stated.
        let h = host(vec![], 0, 24);
        let slow_pm = || {
            let v = h.pm();
            h.ns.set(h.ns.get() + 1_000_000);
            v
        };
        let c = calibrate_tsc(&|| h.rdtsc(), &slow_pm, 24, WINDOW_100MS).unwrap();
        // Two 1 ms brackets over a ~100 ms span: about 20 000 ppm.
        assert!((15_000..25_000).contains(&c.uncertainty_ppm), "{c:?}");
    }

    #[rstest]
    #[case::floating_bus(0xFFFF_FFFF)]
    #[case::zero(0)]
    fn a_dead_port_is_stuck_not_an_endless_loop(#[case] v: u32) {
        let h = host(vec![], 0, 24);
        let e = calibrate_tsc(&|| h.rdtsc(), &|| v, 24, WINDOW_100MS).unwrap_err();
        assert!(matches!(e, CalibrationError::Stuck { tsc } if tsc > STUCK_TSC));
        assert!(format!("{e}").contains("did not advance"));
    }

    #[test]
    fn a_port_that_is_no_timer_is_implausible() {
        // A port returning a fast-changing counter (not 3.58 MHz): the ratio is nonsense.
        let h = host(vec![], 0, 24);
        let n = Cell::new(0u32);
        let fast = || {
            n.set(n.get().wrapping_add(0x7F_0000));
            n.get()
        };
        let e = calibrate_tsc(&|| h.rdtsc(), &fast, 24, WINDOW_100MS).unwrap_err();
        assert!(matches!(e, CalibrationError::Implausible { .. }), "{e:?}");
    }
}
