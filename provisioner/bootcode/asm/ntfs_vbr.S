# ufd NTFS partition boot record ("UFDVBR1") — the project's own, written from
# the behaviour described in shared/reference/formats.md §4; no Microsoft bytes.
#
# Assembled with GNU as (`as --32`, 16-bit real mode), linked at 0x7C00
# (`ld -m elf_i386 -Ttext 0x7C00 --oformat binary`). The image covers the first
# TABLE_OFFSET bytes of the 8 KiB $Boot area; the Rust side (src/vbr.rs)
# splices it around mkntfs's BPB (0x0B..0x53 are never written) and writes the
# BOOTMGR extent table at TABLE_OFFSET (layout documented in src/vbr.rs and
# mirrored by the T_* constants below).
#
# Stage 1 (sector 0, 0x54..0x1FD): set up 0000:7C00, keep DL at 0000:7C0E (as
# the NT6 boot record does), require INT 13h extensions, read $Boot sectors
# 1..15 to 0000:7E00 (partition start = BPB HiddenSectors at 0x1C).
# Stage 2 (0x7E00..): check the table, read bootmgr's MFT record from the
# recorded sector, apply the update-sequence fixups, check "FILE", in-use flag
# and record number, find the unnamed $DATA attribute and compare it
# byte-for-byte with the copy recorded at provisioning time; a difference
# means bootmgr was moved, replaced, resized or compressed -> refuse with a
# message. Then read the recorded sector runs to 2000:0000 (at most 127
# sectors per call, never across a 64 KiB boundary) and jump to 2000:0000
# with DL = boot drive and the boot sector (BPB) left at 0000:7C00.
# Every message goes to the screen (INT 10h AH=0Eh) and to COM1 (0x3F8),
# followed by "Press Ctrl+Alt+Del to restart"; then the CPU halts with
# interrupts on.

    .code16
    .intel_syntax noprefix
    .text
    .globl _start

    .set BASE,          0x7C00
    .set BPB_HIDDEN,    BASE + 0x1C
    .set DRIVE,         BASE + 0x0E     # NT6 keeps DL here (BPB "reserved sectors", 0 on NTFS)
    .set COM1,          0x3F8
    .set BOOT_SECTORS,  15              # $Boot sectors 1..15
    .set TABLE_OFFSET,  0x1000
    .set TABLE,         BASE + TABLE_OFFSET
    .set T_MAGIC,       TABLE + 0x00    # "UFDBMX1\0"
    .set T_RUNS,        TABLE + 0x0A    # u16 number of runs
    .set T_RECSECT,     TABLE + 0x0C    # u16 sectors per MFT record
    .set T_RECNO,       TABLE + 0x10    # u64 MFT record number
    .set T_RECLBA,      TABLE + 0x18    # u64 partition-relative sector of the record
    .set T_ATTRLEN,     TABLE + 0x28    # u16 length of the recorded $DATA attribute
    .set T_ATTR,        TABLE + 0x30    # recorded $DATA attribute bytes (<= 512)
    .set T_RUN0,        TABLE + 0x240   # runs: u64 start sector, u32 count, u32 0
    .set RECBUF,        0x1000          # 0000:1000, MFT record buffer (<= 4 KiB)
    .set RECSEG,        RECBUF >> 4
    .set LOADSEG,       0x2000

_start:
    .byte   0xEB, 0x52, 0x90            # jmp short 0x54; nop
    .ascii  "NTFS    "
    .org    0x54                        # 0x0B..0x53: the BPB, kept as mkntfs wrote it

stage1:
    cli
    xor     ax, ax
    mov     ss, ax
    mov     sp, BASE
    mov     ds, ax
    mov     es, ax
    sti
    cld
    ljmp    0, stage1_cs                # some BIOSes enter at 07C0:0000
stage1_cs:
    mov     byte ptr [DRIVE], dl

    # COM1: 115200 8N1.
    mov     dx, COM1 + 3
    mov     al, 0x80
    out     dx, al
    mov     dl, COM1 & 0xFF
    mov     ax, 1
    out     dx, ax
    mov     dl, (COM1 + 3) & 0xFF
    mov     al, 3
    out     dx, al

    mov     dl, byte ptr [DRIVE]
    mov     ah, 0x41
    mov     bx, 0x55AA
    int     0x13
    jc      disk_error
    cmp     bx, 0xAA55
    jne     disk_error
    test    cl, 1
    jz      disk_error

    mov     eax, 1
    xor     edx, edx
    mov     cx, BOOT_SECTORS
    mov     di, (BASE + 0x200) >> 4
    call    read
    jmp     stage2

# Read CX sectors at partition-relative LBA EDX:EAX to DI:0000 with AH=42h.
# The absolute LBA is HiddenSectors + relative (64-bit add). Two attempts.
read:
    pushad
    add     eax, dword ptr [BPB_HIDDEN]
    adc     edx, 0
    mov     si, offset dap
    mov     dword ptr [si + 8], eax
    mov     dword ptr [si + 12], edx
    mov     bp, 2
read_try:
    mov     word ptr [si + 2], cx
    mov     word ptr [si + 6], di
    mov     dl, byte ptr [DRIVE]
    mov     ah, 0x42
    int     0x13
    jnc     read_ok
    xor     ah, ah
    mov     dl, byte ptr [DRIVE]
    int     0x13
    dec     bp
    jnz     read_try
    jmp     disk_error
read_ok:
    popad
    ret

disk_error:
    mov     si, offset msg_disk
# Print the message at SI and the restart line, then halt.
fail:
    call    print
    mov     si, offset msg_restart
    call    print
halt:
    sti
    hlt
    jmp     halt

    .include "console.inc"

dap:
    .byte   0x10, 0
    .word   0                           # sectors
    .word   0, 0                        # buffer offset, segment
    .long   0, 0                        # 64-bit LBA

msg_disk:
    .asciz  "A disk read error occurred"
msg_restart:
    .asciz  "Press Ctrl+Alt+Del to restart"
    .ascii  "UFDVBR1"

    .org    0x1FE
    .byte   0x55, 0xAA

# ---------------------------------------------------------------- stage 2
stage2:
    mov     si, offset msg_missing
    cmp     dword ptr [T_MAGIC], 0x42444655     # "UFDB"
    jne     fail
    cmp     dword ptr [T_MAGIC + 4], 0x0031584D # "MX1\0"
    jne     fail

    # bootmgr's MFT record -> 0000:1000
    mov     eax, dword ptr [T_RECLBA]
    mov     edx, dword ptr [T_RECLBA + 4]
    mov     cx, word ptr [T_RECSECT]
    mov     di, RECSEG
    call    read

    mov     si, offset msg_missing
    cmp     dword ptr [RECBUF], 0x454C4946      # "FILE"
    jne     fail

    # Update-sequence fixups: the last word of every sector must equal the
    # USN; restore the saved words. A mismatch is a torn/corrupt record.
    mov     bx, word ptr [RECBUF + 4]           # USA offset
    add     bx, RECBUF
    mov     cx, word ptr [RECBUF + 6]           # USA count (USN + 1 per sector)
    dec     cx
    jz      fixups_done
    mov     ax, word ptr [bx]                   # USN
    mov     di, RECBUF + 0x1FE
fixup:
    add     bx, 2
    cmp     word ptr [di], ax
    jne     disk_error
    mov     dx, word ptr [bx]
    mov     word ptr [di], dx
    add     di, 0x200
    loop    fixup
fixups_done:

    test    byte ptr [RECBUF + 0x16], 1         # in use
    jz      fail                                # si = msg_missing
    mov     si, offset msg_moved
    mov     eax, dword ptr [RECBUF + 0x2C]      # record number (NTFS 3.1)
    cmp     eax, dword ptr [T_RECNO]
    jne     fail

    # Find the unnamed $DATA (0x80) attribute.
    mov     bx, word ptr [RECBUF + 0x14]
    add     bx, RECBUF
find_attr:
    mov     si, offset msg_missing
    mov     eax, dword ptr [bx]
    cmp     eax, 0xFFFFFFFF
    je      fail
    mov     dx, word ptr [bx + 4]
    test    dx, dx
    jz      fail
    cmp     eax, 0x80
    jne     next_attr
    cmp     byte ptr [bx + 9], 0
    je      found_attr
next_attr:
    add     bx, dx
    cmp     bx, RECBUF + 0x1000
    jb      find_attr
    jmp     fail

found_attr:
    mov     si, offset msg_compressed
    test    byte ptr [bx + 0x0C], 0x01          # ATTR_IS_COMPRESSED
    jnz     fail
    mov     si, offset msg_moved
    mov     cx, word ptr [T_ATTRLEN]
    cmp     word ptr [bx + 4], cx
    jne     fail
    push    si
    mov     si, T_ATTR
    mov     di, bx
    repe cmpsb
    pop     si
    jne     fail

    # Load the runs to 2000:0000.
    mov     di, LOADSEG
    mov     si, T_RUN0
    mov     bp, word ptr [T_RUNS]
run_loop:
    test    bp, bp
    jz      launch
    mov     eax, dword ptr [si]
    mov     edx, dword ptr [si + 4]
    mov     ebx, dword ptr [si + 8]             # sectors left in this run
chunk:
    test    ebx, ebx
    jz      next_run
    # cx = min(left, 127, sectors up to the next 64 KiB boundary)
    mov     cx, di
    and     cx, 0x0FFF
    shr     cx, 5
    neg     cx
    add     cx, 128
    cmp     cx, 127
    jbe     1f
    mov     cx, 127
1:  movzx   ecx, cx
    cmp     ebx, ecx
    jae     2f
    mov     cx, bx
2:  call    read
    add     eax, ecx
    adc     edx, 0
    sub     ebx, ecx
    shl     cx, 5
    add     di, cx
    jmp     chunk
next_run:
    add     si, 16
    dec     bp
    jmp     run_loop

launch:
    mov     dl, byte ptr [DRIVE]
    xor     ax, ax
    mov     ds, ax
    mov     es, ax
    ljmp    LOADSEG, 0

msg_missing:
    .asciz  "BOOTMGR is missing"
msg_compressed:
    .asciz  "BOOTMGR is compressed"
msg_moved:
    .asciz  "BOOTMGR has moved: re-run ufd provision"

    .org    TABLE_OFFSET
