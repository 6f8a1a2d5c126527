# ufd MBR boot code ("UFDMBR1") — the project's own, written from the behaviour
# described in shared/reference/formats.md §4; no Microsoft bytes.
#
# Assembled with GNU as (`as --32`, 16-bit real mode) and linked at 0x0600
# (`ld -m elf_i386 -Ttext 0x600 --oformat binary`). Must stay <= 440 bytes: the
# disk signature (0x1B8), the reserved word and the partition table follow it.
#
# Behaviour (same contract as the Windows 7 MBR and syslinux mbr.S):
#   1. BIOS loads us at 0000:7C00 with DL = boot drive. Copy the sector to
#      0000:0600 and far-jump there, freeing 7C00 for the partition boot record.
#   2. Scan the 4 entries at 0x1BE: every boot flag must be 0x00 or 0x80 and at
#      most one 0x80, else "Invalid partition table". No active entry:
#      "Missing operating system", then INT 18h (the BIOS tries the next boot
#      device, as the Windows 7 MBR does without a message).
#   3. INT 13h AH=41h BX=55AAh: if CF clear, BX=AA55h and CX bit 0 (packet
#      interface) are set, read the partition's first sector with AH=42h
#      (64-bit DAP, LBA from the entry). Otherwise fall back to AH=02h CHS
#      with the geometry reported by AH=08h, only when the LBA lies below
#      cylinder 1024. Up to 4 attempts with a disk reset in between.
#      Failure: "Error loading operating system".
#   4. No 55 AA at 0000:7DFE: "Missing operating system".
#   5. Jump to 0000:7C00 with DL = boot drive, DS:SI and DS:BP -> the active
#      partition entry in the relocated copy (0000:07BE + 16*n).
# Every message goes to the screen (INT 10h AH=0Eh) and to COM1 (0x3F8,
# initialised to 115200 8N1; only the divisor and LCR are set), then the CPU halts with interrupts enabled so
# Ctrl+Alt+Del still works.

    .code16
    .intel_syntax noprefix
    .text
    .globl _start

    .set RELOC,      0x0600
    .set LOAD,       0x7C00
    .set PTABLE,     RELOC + 0x1BE
    .set COM1,       0x3F8

_start:
    cli
    xor     ax, ax
    mov     ss, ax
    mov     sp, LOAD
    mov     ds, ax
    mov     es, ax
    cld
    mov     si, LOAD
    mov     di, RELOC
    mov     cx, 256
    rep movsw
    ljmp    0, relocated

relocated:
    sti
    mov     byte ptr [drive], dl

    # COM1: 115200 8N1 (a 16-bit OUT writes the divisor latch low and high).
    mov     dx, COM1 + 3
    mov     al, 0x80
    out     dx, al              # LCR: DLAB
    mov     dl, COM1 & 0xFF
    mov     ax, 1
    out     dx, ax              # divisor = 1
    mov     dl, (COM1 + 3) & 0xFF
    mov     al, 3
    out     dx, al              # LCR: 8N1

    # Find the single active entry.
    mov     si, PTABLE
    xor     bp, bp
    mov     cx, 4
scan:
    mov     al, byte ptr [si]
    test    al, al
    jz      scan_next
    cmp     al, 0x80
    jne     bad_table
    test    bp, bp
    jnz     bad_table
    mov     bp, si
scan_next:
    add     si, 16
    loop    scan
    test    bp, bp
    jnz     have_active
    mov     si, offset msg_missing
    call    print
    int     0x18                # let the BIOS try the next boot device
    jmp     halt

bad_table:
    mov     si, offset msg_table
    jmp     fail

have_active:
    mov     di, 4               # attempts
try_read:
    mov     dl, byte ptr [drive]
    mov     ah, 0x41
    mov     bx, 0x55AA
    int     0x13
    jc      chs_read
    cmp     bx, 0xAA55
    jne     chs_read
    test    cl, 1
    jz      chs_read

    mov     si, offset dap
    mov     eax, dword ptr [bp + 8]
    mov     dword ptr [si + 8], eax
    mov     word ptr [si + 2], 1
    mov     dl, byte ptr [drive]
    mov     ah, 0x42
    int     0x13
    jnc     loaded
    jmp     retry

chs_read:
    mov     dl, byte ptr [drive]
    mov     ah, 0x08
    push    es
    int     0x13
    pop     es
    jc      retry
    movzx   ebx, cl
    and     bl, 0x3F            # sectors per track
    jz      load_error
    movzx   ecx, dh
    inc     cx                  # heads
    mov     eax, dword ptr [bp + 8]
    xor     edx, edx
    div     ebx                 # eax = lba / spt, edx = sector - 1
    mov     bx, dx
    inc     bx                  # sector (1-based)
    xor     edx, edx
    div     ecx                 # eax = cylinder, edx = head
    cmp     eax, 1023
    ja      load_error          # beyond the CHS limit and no extensions
    mov     ch, al
    shl     ah, 6
    or      ah, bl
    mov     cl, ah
    mov     dh, dl
    mov     dl, byte ptr [drive]
    mov     bx, LOAD
    mov     ax, 0x0201
    int     0x13
    jnc     loaded

retry:
    dec     di
    jz      load_error
    xor     ah, ah
    mov     dl, byte ptr [drive]
    int     0x13                # reset the disk system
    jmp     try_read

loaded:
    cmp     word ptr [LOAD + 0x1FE], 0xAA55
    jne     no_os
    mov     si, bp
    mov     dl, byte ptr [drive]
    ljmp    0, LOAD

load_error:
    mov     si, offset msg_load
    jmp     fail
no_os:
    mov     si, offset msg_missing
fail:
    call    print
halt:
    sti
    hlt
    jmp     halt

    .include "console.inc"

dap:
    .byte   0x10, 0
    .word   1                   # sectors
    .word   LOAD, 0             # buffer 0000:7C00
    .long   0, 0                # 64-bit LBA (low dword patched)

drive:
    .byte   0

msg_table:
    .asciz  "Invalid partition table"
msg_load:
    .asciz  "Error loading operating system"
msg_missing:
    .asciz  "Missing operating system"
signature:
    .ascii  "UFDMBR1"
