//! A 1-sector MBR guest for SeaBIOS, assembled with GNU as (binutils). It prints `UFDPROBE`
//! lines on COM1 and debugcon 0xE9: e.g. `{"event":"handoff"}`, then ticks
//! (`{"event":"tick"}` every 0.5 s via INT 15h AH=86h, no disk I/O: safe to unplug), then
//! optionally writes one sector (INT 13h AH=43h to LBA 1), prints the closing lines and powers
//! off through ACPI S5 (q35 PM1a_CNT at 0x604, SLP_EN).

#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tick,
    WriteThenDone,
}

/// What a scripted guest prints: `before`, then `ticks` ticks 0.5 s apart (`None`: tick for
/// ever), then (optionally) one sector written to LBA 1, then `after`, then ACPI power-off.
pub struct Script<'a> {
    pub before: &'a [&'a str],
    pub ticks: Option<u16>,
    pub write: bool,
    pub after: &'a [&'a str],
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install binutils)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn asciz(label: &str, text: &str) -> String {
    let esc = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{label}: .asciz \"{esc}\\r\\n\"\n")
}

/// Assemble the guest and write a 1 MiB sparse disk image with it in sector 0.
pub fn guest_image(dir: &Path, mode: Mode) -> PathBuf {
    let handoff = r#"UFDPROBE {"event":"handoff","guest":"mbr"}"#;
    match mode {
        Mode::Tick => script_image(
            dir,
            "tick.img",
            &Script {
                before: &[handoff],
                ticks: None,
                write: false,
                after: &[],
            },
        ),
        Mode::WriteThenDone => script_image(
            dir,
            "write.img",
            &Script {
                before: &[handoff],
                ticks: Some(0),
                write: true,
                after: &[r#"UFDPROBE {"event":"done","outcome":"boots"}"#],
            },
        ),
    }
}

/// Assemble a scripted guest into `dir/name`.
pub fn script_image(dir: &Path, name: &str, script: &Script) -> PathBuf {
    let mut code = String::from(
        r#"
    .code16
    .intel_syntax noprefix
_start:
    .byte 0xEA
    .word start2, 0
start2:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    mov byte ptr [drive], dl
"#,
    );
    let mut data = String::new();
    for (i, l) in script.before.iter().enumerate() {
        code += &format!("    mov si, offset b{i}\n    call puts\n");
        data += &asciz(&format!("b{i}"), l);
    }
    data += &asciz("msg_tick", r#"UFDPROBE {"event":"tick"}"#);
    match script.ticks {
        None => code += "tick:\n    call tick1\n    jmp tick\n",
        Some(n) => {
            code += &format!("    mov bx, {n}\ntick:\n    test bx, bx\n    jz ticked\n    call tick1\n    dec bx\n    jmp tick\nticked:\n");
        }
    }
    if script.write {
        code += "    mov si, offset dap\n    mov dl, byte ptr [drive]\n    mov ax, 0x4300\n    int 0x13\n    jc hang\n";
    }
    for (i, l) in script.after.iter().enumerate() {
        code += &format!("    mov si, offset a{i}\n    call puts\n");
        data += &asciz(&format!("a{i}"), l);
    }
    code += r#"
    mov dx, 0x604
    mov ax, 0x2000
    out dx, ax
hang:
    hlt
    jmp hang
tick1:
    mov si, offset msg_tick
    call puts
    mov ah, 0x86
    mov cx, 0x0007
    mov dx, 0xA120
    int 0x15
    ret
puts:
    lodsb
    test al, al
    jz 2f
    call putc
    jmp puts
2:  ret
putc:
    push dx
    push ax
    mov dx, 0x3FD
3:  in al, dx
    test al, 0x20
    jz 3b
    pop ax
    mov dx, 0x3F8
    out dx, al
    out 0xE9, al
    pop dx
    ret
dap:
    .byte 0x10, 0
    .word 1
    .word 0x7C00, 0
    .quad 1
drive: .byte 0
"#;
    let src = code + &data;
    let stem = name.trim_end_matches(".img");
    let s = dir.join(format!("{stem}.S"));
    std::fs::write(&s, src).unwrap();
    let o = dir.join(format!("{stem}.o"));
    let b = dir.join(format!("{stem}.bin"));
    run(Command::new("as").arg("--32").arg("-o").arg(&o).arg(&s));
    run(Command::new("ld")
        .args([
            "-m",
            "elf_i386",
            "-Ttext",
            "0x7C00",
            "-e",
            "_start",
            "--oformat",
            "binary",
            "-o",
        ])
        .arg(&b)
        .arg(&o));
    let bin = std::fs::read(&b).unwrap();
    assert!(bin.len() <= 440, "guest is {} bytes", bin.len());
    let mut sector = [0u8; 512];
    sector[..bin.len()].copy_from_slice(&bin);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    let img = dir.join(name);
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &sector, 0).unwrap();
    img
}

/// Whether process `pid` is gone (or a zombie about to be reaped by init).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}
