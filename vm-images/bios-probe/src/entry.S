# ufd-bios-probe: real-mode entry, long-mode switch and the INT thunk back to real mode.
# AT&T syntax (global_asm! with options(att_syntax)); linked at 0x20000 (link.ld).
#
# Hand-off from our NTFS boot record (provisioner/bootcode/asm/ntfs_vbr.S, `launch`):
# CS:IP = 2000:0000, DL = BIOS boot drive, DS = ES = 0, SS:SP = 0000:7C00-ish, interrupts
# on, the boot sector (BPB) still at 0000:7C00. Microsoft's NT6 boot record hands off the
# same way (DL = drive, bootmgr at 2000:0000).
#
# Real mode (CS = 2000h, DS = ES = 2000h, SS:SP = 0000:7C00): record DL, INT 13h AH=41h
# and AH=48h (66-byte EDD 3.0 buffer), the BPB's HiddenSectors and OEM id, the BDA disk
# count and EBDA segment, E820 (up to 64 entries of 24 bytes), A20 (already on / INT 15h
# AX=2401h / port 92h, checked by the 1 MiB wrap test). Then 32-bit protected mode:
# zero .bss, identity-map 4 GiB with 2 MiB pages, PAE + EFER.LME + CR0.PG, 64-bit code,
# RSP = 0x200000 (stack 1..2 MiB), call rust_main(&bootinfo).
#
# bios_call(int_no) (64-bit SysV): long mode -> 16-bit compatibility-mode segment (base
# 0x20000) -> paging off (leaves IA-32e mode) -> EFER.LME off -> CR0.PE off -> real mode
# 2000:xxxx, real-mode IVT, registers from thunk_regs, `int N` with interrupts on, registers
# and FLAGS back into thunk_regs, then protected mode -> long mode again (Intel SDM vol. 3
# 10.8.5 / 9.9.2). Interrupts are off in long mode (no IDT of ours).

    .set BASE, 0x20000
    .set BI_DRIVE,   0x00
    .set BI_EXT_CF,  0x01
    .set BI_EXT_AX,  0x02
    .set BI_EXT_BX,  0x04
    .set BI_EXT_CX,  0x06
    .set BI_EDD_CF,  0x08
    .set BI_A20,     0x09
    .set BI_EDD_AX,  0x0A
    .set BI_E820_N,  0x0C
    .set BI_EBDA,    0x0E
    .set BI_HIDDEN,  0x10
    .set BI_OEM,     0x14
    .set BI_BDA_N,   0x1C
    .set BI_EDD,     0x20
    .set BI_E820,    0x70
    .set E820_MAX,   64

    .section .text.entry, "awx"
    .code16
    .globl _start
_start:
    cli
    xor     %ax, %ax
    mov     %ax, %ss
    mov     $0x7C00, %sp
    mov     $0x2000, %ax
    mov     %ax, %ds
    mov     %ax, %es
    cld
    sti
    mov     %dl, (bootinfo - BASE + BI_DRIVE)

    # What the boot record left at 0000:7C00 and the BIOS data area.
    push    %ds
    xor     %ax, %ax
    mov     %ax, %ds
    mov     0x7C1C, %eax
    mov     %eax, %es:(bootinfo - BASE + BI_HIDDEN)
    mov     0x7C03, %eax
    mov     %eax, %es:(bootinfo - BASE + BI_OEM)
    mov     0x7C07, %eax
    mov     %eax, %es:(bootinfo - BASE + BI_OEM + 4)
    mov     0x40E, %ax
    mov     %ax, %es:(bootinfo - BASE + BI_EBDA)
    mov     0x475, %al
    mov     %al, %es:(bootinfo - BASE + BI_BDA_N)
    pop     %ds

    # INT 13h AH=41h: extensions present?
    mov     $0x41, %ah
    mov     $0x55AA, %bx
    mov     (bootinfo - BASE + BI_DRIVE), %dl
    int     $0x13
    setc    (bootinfo - BASE + BI_EXT_CF)
    mov     %ax, (bootinfo - BASE + BI_EXT_AX)
    mov     %bx, (bootinfo - BASE + BI_EXT_BX)
    mov     %cx, (bootinfo - BASE + BI_EXT_CX)

    # INT 13h AH=48h: EDD drive parameters into a 66-byte (EDD 3.0) buffer.
    mov     $(bootinfo - BASE + BI_EDD), %si
    movw    $0x42, (%si)
    mov     $0x48, %ah
    mov     (bootinfo - BASE + BI_DRIVE), %dl
    int     $0x13
    setc    (bootinfo - BASE + BI_EDD_CF)
    mov     %ax, (bootinfo - BASE + BI_EDD_AX)
    mov     $0x2000, %ax
    mov     %ax, %ds
    mov     %ax, %es

    # INT 15h EAX=E820h: the memory map, 24-byte entries (ACPI 3.0 attributes preset to 1).
    xor     %ebx, %ebx
    mov     $(bootinfo - BASE + BI_E820), %di
e820_next:
    movl    $1, %es:20(%di)
    mov     $0xE820, %eax
    mov     $0x534D4150, %edx
    mov     $24, %ecx
    int     $0x15
    jc      e820_done
    cmp     $0x534D4150, %eax
    jne     e820_done
    incw    (bootinfo - BASE + BI_E820_N)
    add     $24, %di
    test    %ebx, %ebx
    jz      e820_done
    cmpw    $E820_MAX, (bootinfo - BASE + BI_E820_N)
    jb      e820_next
e820_done:
    mov     $0x2000, %ax
    mov     %ax, %ds
    mov     %ax, %es

    # A20: 1 = already on, 2 = INT 15h AX=2401h, 3 = port 92h (fast A20), 0 = still off.
    movb    $1, (bootinfo - BASE + BI_A20)
    call    a20_on
    jnz     a20_done
    movb    $2, (bootinfo - BASE + BI_A20)
    mov     $0x2401, %ax
    int     $0x15
    call    a20_on
    jnz     a20_done
    movb    $3, (bootinfo - BASE + BI_A20)
    in      $0x92, %al
    or      $2, %al
    and     $0xFE, %al
    out     %al, $0x92
    call    a20_on
    jnz     a20_done
    movb    $0, (bootinfo - BASE + BI_A20)
a20_done:

    # Protected mode, flat 32-bit.
    cli
    mov     $0x2000, %ax
    mov     %ax, %ds
    lgdtl   (gdt_ptr - BASE)
    mov     %cr0, %eax
    or      $1, %eax
    mov     %eax, %cr0
    .byte   0x66, 0xEA
    .long   pm32_start
    .word   0x08

# ZF = 0 when A20 is on: 0000:0500 and FFFF:0510 are different bytes.
a20_on:
    push    %ds
    push    %es
    xor     %ax, %ax
    mov     %ax, %ds
    not     %ax
    mov     %ax, %es
    mov     0x500, %cl
    mov     %es:0x510, %ch
    movb    $0x00, 0x500
    movb    $0xFF, %es:0x510
    cmpb    $0xFF, 0x500
    mov     %cl, 0x500
    mov     %ch, %es:0x510
    pop     %es
    pop     %ds
    ret

# --------------------------------------------------------------- the thunk, real-mode side
# Entered from bios_call in a 16-bit compatibility-mode code segment with base 0x20000.
thunk16:
    mov     $0x28, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    mov     %cr0, %eax
    and     $0x7FFFFFFF, %eax
    mov     %eax, %cr0
    mov     $0xC0000080, %ecx
    rdmsr
    and     $0xFFFFFEFF, %eax
    wrmsr
    mov     %cr0, %eax
    and     $0xFFFFFFFE, %eax
    mov     %eax, %cr0
    .byte   0xEA
    .word   rm_thunk - BASE
    .word   0x2000
rm_thunk:
    mov     $0x2000, %ax
    mov     %ax, %ds
    xor     %ax, %ax
    mov     %ax, %ss
    mov     $0x7C00, %sp
    mov     %ax, %fs
    mov     %ax, %gs
    lidtl   (rm_idt - BASE)
    mov     (thunk_regs - BASE + 30), %ax
    mov     %ax, %es
    mov     (thunk_regs - BASE + 0), %eax
    mov     (thunk_regs - BASE + 4), %ebx
    mov     (thunk_regs - BASE + 8), %ecx
    mov     (thunk_regs - BASE + 12), %edx
    mov     (thunk_regs - BASE + 16), %esi
    mov     (thunk_regs - BASE + 20), %edi
    mov     (thunk_regs - BASE + 24), %ebp
    pushw   (thunk_regs - BASE + 28)
    pop     %ds
    sti
    .byte   0xCD
    .globl  thunk_int_no
thunk_int_no:
    .byte   0x13
    cli
    mov     %eax, %cs:(thunk_regs - BASE + 0)
    mov     %ebx, %cs:(thunk_regs - BASE + 4)
    mov     %ecx, %cs:(thunk_regs - BASE + 8)
    mov     %edx, %cs:(thunk_regs - BASE + 12)
    mov     %esi, %cs:(thunk_regs - BASE + 16)
    mov     %edi, %cs:(thunk_regs - BASE + 20)
    mov     %ebp, %cs:(thunk_regs - BASE + 24)
    mov     %ds, %cs:(thunk_regs - BASE + 28)
    mov     %es, %cs:(thunk_regs - BASE + 30)
    pushf
    pop     %ax
    mov     %ax, %cs:(thunk_regs - BASE + 32)
    cld
    mov     $0x2000, %ax
    mov     %ax, %ds
    lgdtl   (gdt_ptr - BASE)
    mov     %cr0, %eax
    or      $1, %eax
    mov     %eax, %cr0
    .byte   0x66, 0xEA
    .long   pm32_back
    .word   0x08

# --------------------------------------------------------------- data the real-mode code reaches
    .balign 16
    .globl  bootinfo
bootinfo:
    .skip   0x670
    .balign 8
    .globl  thunk_regs
thunk_regs:                         # eax ebx ecx edx esi edi ebp (u32), ds es flags (u16)
    .skip   40
    .balign 16
    .globl  thunk_dap
thunk_dap:                          # INT 13h disk address packet for the Rust side
    .skip   32
    .balign 8
gdt:
    .quad   0
    .quad   0x00CF9A000000FFFF      # 0x08 code32 flat
    .quad   0x00CF92000000FFFF      # 0x10 data flat
    .quad   0x00AF9A000000FFFF      # 0x18 code64
    .quad   0x00009A020000FFFF      # 0x20 code16, base 0x20000, 64 KiB
    .quad   0x000092000000FFFF      # 0x28 data16, base 0, 64 KiB
gdt_end:
gdt_ptr:
    .word   gdt_end - gdt - 1
    .long   gdt
rm_idt:
    .word   0x3FF
    .long   0
saved_idt:
    .skip   16
saved_rsp:
    .quad   0
thunk_active:
    .byte   0
    .globl  thunk_end
thunk_end:

# --------------------------------------------------------------- 32-bit protected mode
    .code32
pm32_start:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    mov     $0x7C00, %esp
    cld
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    xor     %eax, %eax
    rep stosb
    # PML4[0] -> PDPT; PDPT[0..4] -> 4 PDs; 2048 x 2 MiB pages = the first 4 GiB, identity.
    movl    $(pt_pdpt + 3), pt_pml4
    movl    $(pt_pd + 0x0003), pt_pdpt
    movl    $(pt_pd + 0x1003), pt_pdpt + 8
    movl    $(pt_pd + 0x2003), pt_pdpt + 16
    movl    $(pt_pd + 0x3003), pt_pdpt + 24
    mov     $pt_pd, %edi
    mov     $0x83, %eax
    mov     $2048, %ecx
1:  mov     %eax, (%edi)
    movl    $0, 4(%edi)
    add     $0x200000, %eax
    add     $8, %edi
    loop    1b
    jmp     enter_long

pm32_back:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
enter_long:
    mov     %cr4, %eax
    or      $0x20, %eax
    mov     %eax, %cr4
    mov     $pt_pml4, %eax
    mov     %eax, %cr3
    mov     $0xC0000080, %ecx
    rdmsr
    or      $0x100, %eax
    wrmsr
    mov     %cr0, %eax
    or      $0x80000001, %eax
    mov     %eax, %cr0
    ljmp    $0x18, $lm64

# --------------------------------------------------------------- 64-bit
    .code64
lm64:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    cmpb    $0, thunk_active(%rip)
    jne     thunk_back
    mov     $0x200000, %rsp
    mov     $bootinfo, %edi
    call    rust_main
2:  cli
    hlt
    jmp     2b

# bios_call(int_no: u32): one software interrupt in real mode with thunk_regs.
    .globl  bios_call
bios_call:
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    pushfq
    cli
    mov     %rsp, saved_rsp(%rip)
    mov     %dil, thunk_int_no(%rip)
    sidt    saved_idt(%rip)
    movb    $1, thunk_active(%rip)
    pushq   $0x20
    pushq   $(thunk16 - BASE)
    lretq
thunk_back:
    movb    $0, thunk_active(%rip)
    mov     saved_rsp(%rip), %rsp
    lidt    saved_idt(%rip)
    popfq
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    ret

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
pt_pml4:
    .skip   4096
pt_pdpt:
    .skip   4096
pt_pd:
    .skip   4 * 4096
    .globl  bounce
bounce:
    .skip   0x8000
