//! Integration tests: boot our MBR + NTFS boot record under QEMU/SeaBIOS.
//!
//! A 64 MiB sparse disk: MBR (ours) with one active type-07 partition at LBA 2048, NTFS made
//! by `mkntfs -p 2048 -H 255 -S 63`, and a stand-in `\bootmgr` (a 16-bit program assembled
//! here) copied with `ntfscp`. The stand-in checks that every one of its sectors arrived in
//! order at 2000:0000, that the BPB is still at 0000:7C00, and prints
//! `BOOTMGR-STANDIN OK dl=80 ...` on COM1, then exits QEMU through isa-debug-exit.
//!
//! Needs (Debian): qemu-system-x86 (with SeaBIOS), ntfs-3g, binutils. TCG is used: SeaBIOS
//! boots faster under TCG than under KVM here (shared/reference/qemu.md §5).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ufd_bootcode::{
    backup_boot_sector_offset, install_mbr, install_vbr, locate_bootmgr, VBR_AREA_LEN,
};
use ufd_formats::bytes::ReadAt;
use ufd_formats::mbr::{partition_type, Geometry, Mbr, PartitionEntry};

const PART_START: u64 = 2048;
const DISK_SECTORS: u64 = 64 * 2048;
const PART_SECTORS: u64 = DISK_SECTORS - PART_START;
/// Stand-in bootmgr size: 600 sectors (300 KiB), so the loader must split reads at the
/// 127-sector limit and at 64 KiB boundaries.
const STANDIN_SECTORS: u32 = 600;

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file();
    assert!(
        found,
        "`{tool}` not found: install the Debian package `{package}`"
    );
}

fn tool_path(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(tool)
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assemble the stand-in bootmgr: sector i (i >= 1) starts with the u16 i and "SECT".
fn standin(dir: &Path) -> Vec<u8> {
    let src = format!(
        r#"
    .code16
    .intel_syntax noprefix
    .set NSECT, {STANDIN_SECTORS}
_start:
    mov     bl, dl
    mov     ax, cs
    mov     ds, ax
    mov     cx, 1
check:
    cmp     cx, NSECT
    jae     good
    mov     ax, cx
    shl     ax, 5
    add     ax, 0x2000
    mov     es, ax
    cmp     word ptr es:[0], cx
    jne     bad
    cmp     dword ptr es:[2], 0x54434553
    jne     bad
    inc     cx
    jmp     check
bad:
    mov     si, offset msg_bad
    call    puts
    mov     ax, cx
    call    hex16
    jmp     done
good:
    mov     si, offset msg_ok
    call    puts
    mov     al, bl
    call    hex8
    mov     si, offset msg_hidden
    call    puts
    xor     ax, ax
    mov     es, ax
    mov     ax, word ptr es:[0x7C1E]
    call    hex16
    mov     ax, word ptr es:[0x7C1C]
    call    hex16
    mov     si, offset msg_oem
    call    puts
    mov     si, 0x7C03
    mov     cx, 4
oem:
    mov     al, byte ptr es:[si]
    call    putc
    inc     si
    loop    oem
    mov     si, offset msg_sect
    call    puts
    mov     ax, NSECT
    call    hex16
done:
    mov     al, 10
    call    putc
    mov     al, 0x10
    out     0xF4, al
1:  hlt
    jmp     1b
puts:
    lodsb
    test    al, al
    jz      2f
    call    putc
    jmp     puts
2:  ret
hex16:
    push    ax
    mov     al, ah
    call    hex8
    pop     ax
hex8:
    push    ax
    shr     al, 4
    call    nib
    pop     ax
nib:
    and     al, 0x0F
    add     al, '0'
    cmp     al, '9'
    jbe     putc
    add     al, 7
putc:
    push    dx
    push    ax
    mov     dx, 0x3FD
3:  in      al, dx
    test    al, 0x20
    jz      3b
    pop     ax
    mov     dx, 0x3F8
    out     dx, al
    pop     dx
    ret
msg_ok:     .asciz "BOOTMGR-STANDIN OK dl="
msg_bad:    .asciz "BOOTMGR-STANDIN BAD sector="
msg_hidden: .asciz " hidden="
msg_oem:    .asciz " oem="
msg_sect:   .asciz " sectors="
"#
    );
    let s = dir.join("standin.S");
    std::fs::write(&s, src).unwrap();
    let o = dir.join("standin.o");
    let b = dir.join("standin.bin");
    run(Command::new("as").arg("--32").arg("-o").arg(&o).arg(&s));
    run(Command::new("ld")
        .args([
            "-m",
            "elf_i386",
            "-Ttext",
            "0",
            "-e",
            "_start",
            "--oformat",
            "binary",
            "-o",
        ])
        .arg(&b)
        .arg(&o));
    let code = std::fs::read(&b).unwrap();
    assert!(code.len() <= 512, "stand-in code is {} bytes", code.len());
    let mut img = vec![0u8; STANDIN_SECTORS as usize * 512];
    img[..code.len()].copy_from_slice(&code);
    for i in 1..STANDIN_SECTORS as usize {
        img[i * 512..i * 512 + 2].copy_from_slice(&(i as u16).to_le_bytes());
        img[i * 512 + 2..i * 512 + 6].copy_from_slice(b"SECT");
    }
    img
}

struct FileReader(File);
impl ReadAt for FileReader {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), std::io::Error> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
}

/// mkntfs a partition image and copy the stand-in bootmgr onto it.
fn make_partition(dir: &Path) -> PathBuf {
    need("mkntfs", "ntfs-3g");
    need("ntfscp", "ntfs-3g");
    need("as", "binutils");
    let part = dir.join("part.img");
    File::create(&part)
        .unwrap()
        .set_len(PART_SECTORS * 512)
        .unwrap();
    run(Command::new(tool_path("mkntfs"))
        .args([
            "-F", "-Q", "-q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", "UFD",
        ])
        .arg(&part));
    // A few files first, so bootmgr is not the first file on the volume.
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0x5Au8; 20_000]).unwrap();
    for name in ["a.txt", "b.txt"] {
        run(Command::new(tool_path("ntfscp"))
            .arg(&part)
            .arg(&filler)
            .arg(name));
    }
    let bm = dir.join("bootmgr");
    std::fs::write(&bm, standin(dir)).unwrap();
    run(Command::new(tool_path("ntfscp"))
        .arg(&part)
        .arg(&bm)
        .arg("bootmgr"));
    part
}

/// Install our VBR (+ backup boot sector) on the partition image.
fn install_on_partition(part: &Path) {
    let ext = locate_bootmgr(&mut FileReader(File::open(part).unwrap())).unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)
        .unwrap();
    let mut area = vec![0u8; VBR_AREA_LEN];
    f.read_exact(&mut area).unwrap();
    install_vbr(&mut area, &ext).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&area).unwrap();
    let backup = backup_boot_sector_offset(&area).unwrap();
    f.write_all_at(&area[..512], backup).unwrap();
}

/// Disk image: MBR sector (with `mbr_edit` applied after our code is installed) + partition.
fn make_disk(
    dir: &Path,
    part: &Path,
    name: &str,
    mbr_edit: impl FnOnce(&mut [u8; 512]),
) -> PathBuf {
    let mut mbr = Mbr::new(0x5EAB_1005);
    mbr.partitions[0] = PartitionEntry::new(
        true,
        partition_type::NTFS,
        PART_START as u32,
        PART_SECTORS as u32,
        Geometry::LBA_ASSIST_255_63,
    )
    .unwrap();
    let mut s0 = mbr.to_bytes();
    install_mbr(&mut s0).unwrap();
    mbr_edit(&mut s0);
    let disk = dir.join(name);
    let out = File::create(&disk).unwrap();
    out.set_len(DISK_SECTORS * 512).unwrap();
    out.write_all_at(&s0, 0).unwrap();
    // Sparse copy of the partition.
    let mut inp = File::open(part).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = inp.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            out.write_all_at(&buf[..n], PART_START * 512 + off).unwrap();
        }
        off += n as u64;
    }
    disk
}

/// Boot `disk` as USB storage on xHCI under SeaBIOS (TCG); return COM1 output once `want`
/// appears, QEMU exits, or 20 s pass (then QEMU is killed).
fn boot(dir: &Path, disk: &Path, want: &str, ide: bool) -> String {
    need("qemu-system-x86_64", "qemu-system-x86");
    let serial = dir.join(format!(
        "{}.serial",
        disk.file_name().unwrap().to_string_lossy()
    ));
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35,accel=tcg",
            "-m",
            "256",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .args(["-no-reboot", "-nodefaults"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(if ide {
            format!("if=ide,format=raw,file={}", disk.display())
        } else {
            format!("if=none,id=ufd,format=raw,file={}", disk.display())
        })
        .args(if ide {
            &[][..]
        } else {
            &[
                "-device",
                "qemu-xhci,id=xhci",
                "-device",
                "usb-storage,bus=xhci.0,port=1,drive=ufd,removable=on,bootindex=0",
            ][..]
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-x86_64");
    let t0 = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains(want) {
            break text;
        }
        if let Some(_st) = child.try_wait().unwrap() {
            break std::fs::read_to_string(&serial).unwrap_or_default();
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    text
}

fn assert_boot(dir: &Path, disk: &Path, want: &str) -> String {
    let out = boot(dir, disk, want, false);
    assert!(out.contains(want), "expected {want:?} on COM1, got:\n{out}");
    out
}

#[test]
fn qemu_boot_mbr_vbr_loads_bootmgr_with_drive_in_dl() {
    let dir = tempfile::tempdir().unwrap();
    let part = make_partition(dir.path());
    install_on_partition(&part);
    let disk = make_disk(dir.path(), &part, "disk.img", |_| {});
    let out = assert_boot(
        dir.path(),
        &disk,
        "BOOTMGR-STANDIN OK dl=80 hidden=00000800 oem=NTFS sectors=0258",
    );
    assert!(!out.contains("BAD"), "{out}");
}

#[test]
fn qemu_boot_vbr_refuses_moved_bootmgr() {
    let dir = tempfile::tempdir().unwrap();
    let part = make_partition(dir.path());
    install_on_partition(&part);
    // Replace bootmgr after the table was recorded (what a servicing update or a manual
    // copy does): a second file grows the volume's allocation, then bootmgr is rewritten
    // larger, so its size and extents change. (`ntfsmove` from ntfs-3g 2022 fails on every
    // non-resident file here, so it cannot be used to move the data in place.)
    let mut bigger = std::fs::read(dir.path().join("bootmgr")).unwrap();
    bigger.extend_from_slice(&vec![0xC3u8; 64 * 1024]);
    let bm2 = dir.path().join("bootmgr2");
    std::fs::write(&bm2, &bigger).unwrap();
    run(Command::new(tool_path("ntfscp"))
        .arg(&part)
        .arg(dir.path().join("filler"))
        .arg("c.txt"));
    run(Command::new(tool_path("ntfscp"))
        .arg(&part)
        .arg(&bm2)
        .arg("bootmgr"));
    let disk = make_disk(dir.path(), &part, "moved.img", |_| {});
    let out = assert_boot(dir.path(), &disk, "Press Ctrl+Alt+Del to restart");
    assert!(
        out.contains("BOOTMGR has moved: re-run ufd provision"),
        "{out}"
    );
    assert!(!out.contains("BOOTMGR-STANDIN"), "{out}");
}

#[test]
fn qemu_boot_vbr_reports_missing_table() {
    let dir = tempfile::tempdir().unwrap();
    let part = make_partition(dir.path());
    install_on_partition(&part);
    // Wipe the extent table (sector 8 of $Boot).
    let f = OpenOptions::new().write(true).open(&part).unwrap();
    f.write_all_at(&[0u8; 512], 0x1000).unwrap();
    let disk = make_disk(dir.path(), &part, "notable.img", |_| {});
    let out = assert_boot(dir.path(), &disk, "Press Ctrl+Alt+Del to restart");
    assert!(out.contains("BOOTMGR is missing"), "{out}");
}

#[test]
fn qemu_boot_mbr_messages() {
    let dir = tempfile::tempdir().unwrap();
    let part = make_partition(dir.path());
    // Not installed: mkntfs's own boot sector still has 55 AA, so use a zeroed one for
    // "Missing operating system".
    let f = OpenOptions::new().write(true).open(&part).unwrap();
    f.write_all_at(&[0u8; 512], 0).unwrap();
    let no_os = make_disk(dir.path(), &part, "noos.img", |_| {});
    assert_boot(dir.path(), &no_os, "Missing operating system");

    let two_active = make_disk(dir.path(), &part, "two.img", |s| {
        s[0x1CE] = 0x80;
        s[0x1CE + 4] = 0x07;
    });
    assert_boot(dir.path(), &two_active, "Invalid partition table");

    let bad_flag = make_disk(dir.path(), &part, "flag.img", |s| s[0x1BE] = 0x81);
    assert_boot(dir.path(), &bad_flag, "Invalid partition table");

    let beyond = make_disk(dir.path(), &part, "beyond.img", |s| {
        // Active partition starting past the end of the disk: the read fails.
        s[0x1BE + 8..0x1BE + 12].copy_from_slice(&0x7000_0000u32.to_le_bytes());
    });
    assert_boot(dir.path(), &beyond, "Error loading operating system");
}

#[test]
fn qemu_boot_ide_disk_loads_bootmgr() {
    let dir = tempfile::tempdir().unwrap();
    let part = make_partition(dir.path());
    install_on_partition(&part);
    let disk = make_disk(dir.path(), &part, "ide.img", |_| {});
    let want = "BOOTMGR-STANDIN OK dl=80 hidden=00000800 oem=NTFS sectors=0258";
    let out = boot(dir.path(), &disk, want, true);
    assert!(out.contains(want), "expected {want:?} on COM1, got:\n{out}");
}

/// Not a QEMU test: the facts about mkntfs's `$Boot` area that the design relies on, and
/// what `install_on_partition` leaves on the volume.
#[test]
fn ntfs_mkntfs_boot_area_and_backup_sector() {
    let dir = tempfile::tempdir().unwrap();
    let part = make_partition(dir.path());
    let f = File::open(&part).unwrap();
    let mut area = vec![0u8; VBR_AREA_LEN];
    f.read_exact_at(&mut area, 0).unwrap();
    assert!(
        area[512..].iter().all(|&b| b == 0),
        "mkntfs left data in $Boot sectors 1-15"
    );
    let backup = backup_boot_sector_offset(&area).unwrap();
    assert_eq!(backup, (PART_SECTORS - 1) * 512);
    let ext = locate_bootmgr(&mut FileReader(File::open(&part).unwrap())).unwrap();
    assert_eq!(ext.file_size, u64::from(STANDIN_SECTORS) * 512);
    assert_eq!(ext.mft_record_size, 1024);
    assert!(
        ext.mft_record_number >= 24,
        "user files start after the reserved records"
    );
    install_on_partition(&part);
    let mut after = vec![0u8; VBR_AREA_LEN];
    f.read_exact_at(&mut after, 0).unwrap();
    assert_eq!(&after[0x0B..0x54], &area[0x0B..0x54], "BPB changed");
    let mut bk = [0u8; 512];
    f.read_exact_at(&mut bk, backup).unwrap();
    assert_eq!(&bk[..], &after[..512]);
    assert_eq!(
        ufd_bootcode::recognise_vbr(&after),
        ufd_bootcode::VbrKind::Ours { version: 1 }
    );
}
