/*
 * linux-stub.S: a stand-in Linux kernel for the direct kernel boot path
 * (`spicebox run --kernel`). Real kernels are far too slow here (ring-0 guest
 * code is emulated), so this file only has the shape a boot loader looks at:
 * a bzImage whose 64-bit entry point reports, on COM1, what the loader handed
 * it through boot_params, and then powers off.
 *
 * Layout (Documentation/arch/x86/boot.rst):
 *   file 0x000  boot sector; the setup header starts at 0x1F1
 *   file 0x200  setup code, the 16-bit entry (QEMU's -kernel uses it)
 *   file 0x400  protected-mode part, loaded at code32_start (1 MiB):
 *                 +0x000  32-bit entry
 *                 +0x200  64-bit entry, the one spicebox uses
 * Only the 64-bit entry is implemented. The other two print
 * "SPICEBOX-FAIL linux-stub-entry16" / "-entry32" and power off, so that a
 * loader entering the wrong one fails a test at once instead of timing out.
 *
 * The 64-bit code is position independent (RIP-relative only): a loader may
 * put a relocatable kernel anywhere, and the stub never relocates itself.
 * It prints one line:
 *   SPICEBOX-LINUX-STUB <cmdline> e820=<entries, decimal> initrd=0x<size, hex>
 *     rsdp=0x<acpi_rsdp_addr, hex> rsdp_ok=<1 if an RSDP with a valid
 *     checksum is there, else 0>
 * Every instruction of it is emulated on the test machines, so it does the
 * least work that proves the loader filled the zero page right.
 */

        .set    SETUP_SECTS, 1          /* setup sectors after the boot sector */
        .set    PM_START, (SETUP_SECTS + 1) * 512
        .set    LOAD_ADDR, 0x100000     /* code32_start and pref_address */

        /* boot_params (the zero page) offsets; RSI points at it on entry */
        .set    BP_ACPI_RSDP_ADDR, 0x070
        .set    BP_EXT_RAMDISK_SIZE, 0x0C4
        .set    BP_EXT_CMD_LINE_PTR, 0x0C8
        .set    BP_SCRATCH, 0x1E4
        .set    BP_E820_ENTRIES, 0x1E8
        .set    BP_RAMDISK_SIZE, 0x21C
        .set    BP_CMD_LINE_PTR, 0x228

        .set    COM1, SERIAL_PORT       /* from build.rs (--defsym), as below */
        .set    COM1_LSR, COM1 + 5
        .set    LSR_THR_EMPTY, 0x20

/* Print the NUL-terminated string at (E)SI on COM1, then power off (ACPI S5:
 * SLP_EN in PM1a_CNT, as every spicebox guest does) and halt. Inline and
 * stack-free, so the 16- and 32-bit entries can use it wherever a loader
 * left them; it assembles for the current .code16/.code32. */
        .macro  PUTS_AND_POWER_OFF
        cld
101:    lodsb
        test    %al, %al
        jz      103f
        mov     %al, %ah
        mov     $COM1_LSR, %dx
102:    in      %dx, %al
        test    $LSR_THR_EMPTY, %al
        jz      102b
        mov     %ah, %al
        mov     $COM1, %dx
        out     %al, %dx
        jmp     101b
103:    mov     $ACPI_PM1A_CNT_PORT, %dx
        mov     $ACPI_POWER_OFF_VALUE, %ax
        out     %ax, %dx
104:    hlt
        jmp     104b
        .endm

        .code16
        .text
        .globl  _start
_start:
        /* Booted as a disk by mistake: stop instead of running the header. */
        cli
1:      hlt
        jmp     1b

/* --- setup header ---------------------------------------------------------
 * Each .org pins a field to its protocol offset; the assembler refuses to
 * move backwards, so a field of the wrong size fails the build. */

        .org    0x1F1
setup_sects:    .byte   SETUP_SECTS
root_flags:     .word   0
                /* 16-byte paragraphs of the protected-mode part */
syssize:        .long   (pm_end - pm_start + 15) / 16
ram_size:       .word   0
vid_mode:       .word   0xFFFF          /* "normal": no mode change */
root_dev:       .word   0
boot_flag:      .word   0xAA55
        .org    0x200
        /* A 16-bit loader runs the setup code from here: it must be a
         * two-byte jump over the rest of the header. */
        jmp     setup_entry
        .org    0x202
header:         .ascii  "HdrS"
                /* 2.12: the first version with xloadflags (XLF_KERNEL_64),
                 * which says there is a 64-bit entry point. */
version:        .word   0x020C
realmode_swtch: .long   0
start_sys_seg:  .word   0x1000          /* obsolete; the traditional value */
kernel_version: .word   version_string - 0x200
type_of_loader: .byte   0               /* written by the loader */
loadflags:      .byte   0x01            /* LOADED_HIGH: protected mode at 1 MiB */
setup_move_size: .word  0
code32_start:   .long   LOAD_ADDR
ramdisk_image:  .long   0
ramdisk_size:   .long   0
bootsect_kludge: .long  0
heap_end_ptr:   .word   0
ext_loader_ver: .byte   0
ext_loader_type: .byte  0
cmd_line_ptr:   .long   0
initrd_addr_max: .long  0x7FFFFFFF
                /* Relocatable to any page: the code is position independent. */
kernel_alignment: .long 0x1000
relocatable_kernel: .byte 1
min_alignment:  .byte   12              /* log2(kernel_alignment) */
xloadflags:     .word   0x0001          /* XLF_KERNEL_64 */
cmdline_size:   .long   2047            /* x86 COMMAND_LINE_SIZE - 1 */
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset: .long   0
payload_length: .long   0
setup_data:     .quad   0
pref_address:   .quad   LOAD_ADDR
                /* Memory needed from the load address: the whole image,
                 * whose end holds the stack. */
init_size:      .long   (pm_end - pm_start + 0xFFF) & ~0xFFF
handover_offset: .long  0
        .org    0x268                   /* end of the 2.12 header */

/* The loader jumps here with CS = the setup segment + 0x20, i.e. CS:0 is
 * file offset 0x200, so strings are addressed relative to that. */
setup_entry:
        cli
        mov     %cs, %ax
        mov     %ax, %ds
        mov     $(msg_entry16 - 0x200), %si
        PUTS_AND_POWER_OFF

msg_entry16:
        .asciz  "SPICEBOX-FAIL linux-stub-entry16\r\n"
version_string:
        .asciz  "spicebox linux-stub"

/* --- protected-mode part -------------------------------------------------- */

        .org    PM_START
pm_start:
        /* 32-bit entry: flat segments, ESI = boot_params, no stack promised.
         * To find its own address the code needs one CALL, and the protocol
         * reserves boot_params.scratch as the 4-byte stack for it. */
        .code32
        cli
        lea     BP_SCRATCH + 4(%esi), %esp
        call    1f
1:      pop     %esi
        add     $(msg_entry32 - 1b), %esi
        PUTS_AND_POWER_OFF

msg_entry32:
        .asciz  "SPICEBOX-FAIL linux-stub-entry32\r\n"

        .org    PM_START + 0x200
        .code64
startup_64:
        /* The protocol promises interrupts off but says nothing of DF or the
         * stack, so set both up here. */
        cli
        cld
        lea     stack_top(%rip), %rsp
        mov     %rsi, %rbx              /* boot_params; no routine below clobbers RBX */

        lea     msg_marker(%rip), %rsi
        call    puts

        /* The command line is at ext_cmd_line_ptr:cmd_line_ptr; 0 = none. */
        mov     BP_EXT_CMD_LINE_PTR(%rbx), %eax
        shl     $32, %rax
        mov     BP_CMD_LINE_PTR(%rbx), %ecx
        or      %rcx, %rax
        jz      1f
        mov     %rax, %rsi
        call    puts
1:
        lea     msg_e820(%rip), %rsi
        call    puts
        movzbl  BP_E820_ENTRIES(%rbx), %eax
        mov     $10, %ecx
        call    print_number

        lea     msg_initrd(%rip), %rsi
        call    puts
        mov     BP_EXT_RAMDISK_SIZE(%rbx), %eax
        shl     $32, %rax
        mov     BP_RAMDISK_SIZE(%rbx), %ecx
        or      %rcx, %rax
        mov     $16, %ecx
        call    print_number

        /* boot_params.acpi_rsdp_addr (protocol 2.14), and whether an RSDP
         * is really there: "RSD PTR " and the first 20 bytes summing to 0. */
        lea     msg_rsdp(%rip), %rsi
        call    puts
        mov     BP_ACPI_RSDP_ADDR(%rbx), %r12
        mov     %r12, %rax
        mov     $16, %ecx
        call    print_number
        lea     msg_rsdp_ok(%rip), %rsi
        call    puts
        xor     %eax, %eax
        test    %r12, %r12
        jz      2f
        movabs  $0x2052545020445352, %rcx /* "RSD PTR " */
        cmp     %rcx, (%r12)
        jne     2f
        mov     $20, %ecx
        xor     %edx, %edx
        mov     %r12, %rsi
1:      add     (%rsi), %dl
        inc     %rsi
        loop    1b
        test    %dl, %dl
        jnz     2f
        mov     $1, %eax
2:      mov     $10, %ecx
        call    print_number

        lea     msg_eol(%rip), %rsi
        PUTS_AND_POWER_OFF

/* Send AL to COM1 once the transmit holding register is empty (no byte is
 * lost on a rate-limited UART). Clobbers AH and DX. No BIOS ran, so the UART
 * keeps its reset settings; an emulated UART ignores the baud rate, and
 * programming the line would only cost emulated instructions. */
putc:
        mov     %al, %ah
        mov     $COM1_LSR, %dx
1:      in      %dx, %al
        test    $LSR_THR_EMPTY, %al
        jz      1b
        mov     %ah, %al
        mov     $COM1, %dx
        out     %al, %dx
        ret

/* Print the NUL-terminated string at RSI. Clobbers RAX, RDX, RSI. */
puts:
1:      lodsb
        test    %al, %al
        jz      2f
        call    putc
        jmp     1b
2:      ret

/* Print RAX in base RCX (2..16) without leading zeros. Digits are produced
 * least significant first, so they wait on the stack. Clobbers RAX, RDX,
 * RSI, RDI. */
print_number:
        xor     %edi, %edi
1:      xor     %edx, %edx
        div     %rcx
        push    %rdx
        inc     %edi
        test    %rax, %rax
        jnz     1b
        lea     digits(%rip), %rsi
2:      pop     %rax
        movzbl  (%rsi,%rax), %eax
        call    putc
        dec     %edi
        jnz     2b
        ret

msg_marker:
        .asciz  "SPICEBOX-LINUX-STUB "
msg_e820:
        .asciz  " e820="
msg_initrd:
        .asciz  " initrd=0x"
msg_rsdp:
        .asciz  " rsdp=0x"
msg_rsdp_ok:
        .asciz  " rsdp_ok="
msg_eol:
        .asciz  "\r\n"
digits:
        .ascii  "0123456789abcdef"

        /* Deepest use: print_number's 16 digits of a 64-bit hex value under
         * two return addresses, 144 bytes. */
        .balign 16
        .fill   256, 1, 0
stack_top:
pm_end:

        .section .note.GNU-stack, "", @progbits
