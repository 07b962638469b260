/*
 * rust-loader.S: boots a 64-bit Rust test guest (images/guests/) at CPL 3.
 *
 * Disk layout (build.rs): this program (boot sector + loader, at most 63
 * sectors) in the first RUST_GUEST_PAYLOAD_LBA sectors, then the guest's flat
 * binary, which starts with the header the guest's linker script writes
 * (images/guests/guest-rt/link.ld):
 *
 *   +0x00 magic "SPBXRTG1"   +0x08 load address   +0x10 bytes to load
 *   +0x18 end of image in memory (bss included)   +0x20 entry point
 *
 * Real mode: collect the e820 map, read the payload with int 13h AH=42 in
 * 32 KiB chunks into a bounce buffer and copy each chunk to the load address
 * (above 1 MiB) through a short trip to 32-bit protected mode. Then, in
 * 32-bit mode, build identity page tables, enter long mode, load a GDT with
 * ring-3 segments, a TSS (with an I/O bitmap allowing every port) and an
 * IDT, remap and mask the 8259s, and `iretq` to the entry at CPL 3 with
 * IF=1, RDI = the boot info block.
 *
 * Everything here runs at CPL 0, which the test machines emulate at ~1.6 M
 * instructions/s, so the code is short and does no loop it can avoid; and it
 * uses nothing that emulator lacks (int3, x87, xsave/xrstor, cmpxchg16b,
 * popcnt). After the `iretq`, CPL 0 only runs the interrupt and exception
 * stubs at the end of this file.
 *
 * Physical memory (identity mapped; every page user-accessible unless noted):
 *   0x00000          not present: catches null pointers
 *   0x07000-0x0FFFF  this loader and its stubs (read-only to CPL 3)
 *   0x10000-0x1FFFF  disk bounce buffer (free once the guest runs)
 *   0x20000-0x2FFFF  runtime structures, see RT_* below (the 4 KiB page
 *                    table, IDT and TSS pages are read-only to CPL 3)
 *   0x30000          not present: stack guard
 *   0x31000-0x8FFFF  the CPL-3 stack (grows down from 0x90000)
 *   0x100000-        the guest image, then whatever the guest allocates
 * The low 4 GiB are mapped with 2 MiB pages (the first 2 MiB with 4 KiB
 * pages, for the two guard pages); the guest maps more (64-bit BARs, RAM
 * above 4 GiB) by writing the page tables, which are user-writable.
 *
 * The layout of the boot info block (RT_BOOTINFO) is mirrored by struct
 * BootInfo in images/guests/guest-rt/src/boot.rs: change both together.
 */
        .include "boot.inc"

        .set    BOUNCE_SEG, 0x1000
        .set    BOUNCE, 0x10000
        .set    CHUNK_SECTORS, 64               /* 32 KiB per int 13h call */

        .set    RT_PML4, 0x20000
        .set    RT_PDPT, 0x21000
        .set    RT_PD0, 0x22000                 /* four PDs: 0-4 GiB */
        .set    RT_PT0, 0x26000                 /* 4 KiB pages for 0-2 MiB */
        .set    RT_IDT, 0x27000
        .set    RT_TSS, 0x28000                 /* TSS, then its I/O bitmap */
        .set    TSS_IOPB, 104                   /* bitmap offset in the TSS */
        .set    TSS_LIMIT, TSS_IOPB + 8192      /* the bitmap's 0xFF end byte included */
        .set    RT_BOOTINFO, 0x2B000
        .set    RT_BOOTINFO_SEG, 0x2B00
        .set    RT_IRQ_COUNTS, 0x2C000          /* u64 per vector, 0-255 */
        .set    RT_IST_EXC, 0x2E000             /* top of the exception stack */
        .set    RT_IST_IRQ, 0x2F000             /* top of the interrupt stack */
        .set    RT_IST_NMI, 0x30000             /* top of the NMI/#DF/#MC stack */
        .set    STACK_GUARD, 0x30000
        .set    STACK_BOTTOM, 0x31000
        .set    STACK_TOP, 0x90000
        .set    MIN_LOAD_ADDR, 0x100000
        .set    MAX_PAYLOAD, 0x4000000          /* 64 MiB: a sanity bound */

        /* struct BootInfo offsets */
        .set    BI_MAGIC, 0x00                  /* "SPBXBOOT" */
        .set    BI_VERSION, 0x08                /* u32 */
        .set    BI_SIZE, 0x0C                   /* u32: sizeof(BootInfo) */
        .set    BI_PML4, 0x10
        .set    BI_IRQ_COUNTS, 0x18
        .set    BI_STACK_BOTTOM, 0x20
        .set    BI_STACK_TOP, 0x28
        .set    BI_IMAGE_START, 0x30
        .set    BI_IMAGE_END, 0x38
        .set    BI_TSC_LOADER, 0x40             /* TSC when the loader started */
        .set    BI_TSC_ENTRY, 0x48              /* TSC just before the iretq */
        .set    BI_BOOT_DRIVE, 0x50             /* u32: the BIOS drive number */
        .set    BI_E820_COUNT, 0x54             /* u32 */
        .set    BI_NAME, 0x58                   /* [u8; 32], set by the guest */
        .set    BI_E820, 0x78                   /* [E820Entry; E820_MAX] */
        .set    E820_ENTRY, 24
        .set    E820_MAX, 64
        .set    BI_TOTAL, BI_E820 + E820_ENTRY * E820_MAX
        .set    BI_VERSION_1, 1

        /* GDT selectors */
        .set    SEL_CODE16, 0x08
        .set    SEL_DATA16, 0x10
        .set    SEL_CODE32, 0x18
        .set    SEL_DATA32, 0x20
        .set    SEL_KCODE64, 0x28
        .set    SEL_UDATA, 0x30 | 3
        .set    SEL_UCODE64, 0x38 | 3
        .set    SEL_TSS, 0x40

        /* page-table entry bits */
        .set    PTE_P, 0x01
        .set    PTE_W, 0x02
        .set    PTE_U, 0x04
        .set    PTE_PS, 0x80
        .set    PTE_URW, PTE_P | PTE_W | PTE_U

main:
        /* Fast A20 (bit 1 of port 0x92; bit 0 would reset the CPU). */
        in      $0x92, %al
        or      $0x02, %al
        and     $0xFE, %al
        out     %al, $0x92

        rdtsc
        mov     %eax, tsc_loader
        mov     %edx, tsc_loader + 4

        /* Zero the runtime structures (page tables, boot info, counters):
         * ES:DI = 0x2000:0, 64 KiB. */
        mov     $0x2000, %ax
        mov     %ax, %es
        xor     %di, %di
        xor     %eax, %eax
        mov     $0x4000, %cx
        rep stosl
        xor     %ax, %ax
        mov     %ax, %es

        call    read_e820
        call    load_payload

        cli
        lgdtl   gdt_descriptor
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $SEL_CODE32, $long_mode_setup

/* --- e820 ------------------------------------------------------------------ */

/* int 15h E820 into the boot info block, E820_ENTRY bytes apart. An entry
 * the BIOS returns in 20 bytes keeps the extended attribute 1 (valid), as
 * ACPI 3 says. */
read_e820:
        mov     $RT_BOOTINFO_SEG, %ax
        mov     %ax, %es
        mov     $BI_E820, %di
        xor     %ebx, %ebx
        xor     %bp, %bp                        /* entries stored */
1:      movl    $1, %es:20(%di)
        mov     $0xE820, %eax
        mov     $E820_ENTRY, %ecx
        mov     $0x534D4150, %edx               /* "SMAP" */
        int     $0x15
        jc      2f
        cmp     $0x534D4150, %eax
        jne     2f
        inc     %bp
        add     $E820_ENTRY, %di
        test    %ebx, %ebx
        jz      2f
        cmp     $E820_MAX, %bp
        jb      1b
2:      mov     %bp, %es:BI_E820_COUNT
        xor     %ax, %ax
        mov     %ax, %es
        test    %bp, %bp
        jnz     3f
        mov     $msg_no_e820, %si
        jmp     loader_fail
3:      ret

/* --- payload ---------------------------------------------------------------- */

/* Read the header sector, check it, then read and copy every sector of the
 * payload to its load address. */
load_payload:
        movl    $RUST_GUEST_PAYLOAD_LBA, dap_lba
        movw    $1, dap_count
        call    read_chunk

        mov     $BOUNCE_SEG, %ax
        mov     %ax, %fs
        mov     $msg_bad_magic, %si
        cmpl    $0x58425053, %fs:0              /* "SPBX" */
        jne     loader_fail
        cmpl    $0x31475452, %fs:4              /* "RTG1" */
        jne     loader_fail
        mov     $msg_bad_header, %si
        mov     %fs:0x08, %edi                  /* load address */
        cmpl    $0, %fs:0x0C
        jne     loader_fail
        cmp     $MIN_LOAD_ADDR, %edi
        jb      loader_fail
        test    $0xFFF, %edi
        jnz     loader_fail
        mov     %fs:0x10, %ecx                  /* bytes to load */
        cmpl    $0, %fs:0x14
        jne     loader_fail
        cmp     $0x28, %ecx                     /* at least the header */
        jb      loader_fail
        cmp     $MAX_PAYLOAD, %ecx
        ja      loader_fail
        mov     %fs:0x20, %eax                  /* entry within the loaded bytes */
        sub     %edi, %eax
        jb      loader_fail
        cmp     %ecx, %eax
        jae     loader_fail
        mov     %edi, load_addr
        mov     %edi, image_start
        mov     %fs:0x18, %eax
        mov     %eax, payload_end
        mov     %fs:0x20, %eax
        mov     %eax, entry_point
        add     $511, %ecx
        shr     $9, %ecx
        mov     %ecx, sectors_left

1:      mov     sectors_left, %eax
        cmp     $CHUNK_SECTORS, %eax
        jbe     2f
        mov     $CHUNK_SECTORS, %eax
2:      mov     %ax, dap_count
        push    %eax
        call    read_chunk
        pop     %ecx                            /* sectors read */
        sub     %ecx, sectors_left
        add     %ecx, dap_lba
        shl     $9, %ecx                        /* bytes */
        mov     $BOUNCE, %esi
        mov     load_addr, %edi
        add     %ecx, load_addr
        call    copy_high
        cmpl    $0, sectors_left
        jne     1b
        ret

/* Read dap_count sectors from dap_lba into the bounce buffer. */
read_chunk:
        mov     dap_count, %bx
        mov     $disk_address_packet_rt, %si
        mov     $0x42, %ah
        mov     boot_drive, %dl
        int     $0x13
        jc      1f
        cmp     dap_count, %bx                  /* the BIOS writes back what it read */
        jne     1f
        ret
1:      mov     $msg_read_error, %si
        jmp     loader_fail

/* Copy ECX bytes (a multiple of 4) from linear ESI to linear EDI in 32-bit
 * protected mode, back in real mode after. Uses no stack in 32-bit mode. */
copy_high:
        cli
        lgdtl   gdt_descriptor
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $SEL_CODE32, $1f
        .code32
1:      mov     $SEL_DATA32, %ax
        mov     %ax, %ds
        mov     %ax, %es
        shr     $2, %ecx
        cld
        rep movsl
        ljmp    $SEL_CODE16, $2f
        .code16
2:      mov     $SEL_DATA16, %ax                /* back to 64 KiB limits */
        mov     %ax, %ds
        mov     %ax, %es
        mov     %cr0, %eax
        and     $~1, %eax
        mov     %eax, %cr0
        ljmp    $0, $3f
3:      xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        sti
        ret

/* Print "SPICEBOX-FAIL loader <what>" (SI) and power off. */
loader_fail:
        push    %si
        mov     $msg_loader_fail, %si
        call    puts_serial
        pop     %si
        call    puts_serial
        mov     $msg_crlf, %si
        call    puts_serial
        jmp     power_off

/* --- 32-bit: page tables, then long mode ------------------------------------ */

        .code32
long_mode_setup:
        mov     $SEL_DATA32, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7C00, %esp

        /* PML4[0] -> PDPT; PDPT[0..3] -> PD0..PD3. */
        movl    $(RT_PDPT | PTE_URW), RT_PML4
        mov     $RT_PDPT, %edi
        mov     $(RT_PD0 | PTE_URW), %eax
        mov     $4, %ecx
1:      mov     %eax, (%edi)
        add     $8, %edi
        add     $0x1000, %eax
        loop    1b

        /* PD0[0] -> PT0; PD entries 1..2047: 2 MiB pages of 0-4 GiB. The
         * high halves stay 0 (the area was zeroed). */
        movl    $(RT_PT0 | PTE_URW), RT_PD0
        mov     $(RT_PD0 + 8), %edi
        mov     $(0x200000 | PTE_URW | PTE_PS), %eax
        mov     $2047, %ecx
2:      mov     %eax, (%edi)
        add     $8, %edi
        add     $0x200000, %eax
        loop    2b

        /* PT0: 4 KiB pages of 0-2 MiB, then the exceptions. */
        mov     $RT_PT0, %edi
        mov     $PTE_URW, %eax
        mov     $512, %ecx
3:      mov     %eax, (%edi)
        add     $8, %edi
        add     $0x1000, %eax
        loop    3b
        movl    $0, RT_PT0                                  /* null page */
        movl    $0, RT_PT0 + (STACK_GUARD >> 12) * 8        /* stack guard */
        mov     $(0x7000 >> 12), %ebx                       /* loader, read-only */
4:      andl    $~PTE_W, RT_PT0(,%ebx,8)
        inc     %ebx
        cmp     $(0x10000 >> 12), %ebx
        jb      4b
        mov     $(RT_PT0 >> 12), %ebx                       /* PT0, IDT, TSS: read-only */
5:      andl    $~PTE_W, RT_PT0(,%ebx,8)
        inc     %ebx
        cmp     $((RT_TSS + TSS_LIMIT) >> 12), %ebx
        jbe     5b

        /* TSS: three IST stacks (every gate uses one, so RSP0 is never
         * used; it gets the exception stack anyway) and an I/O permission
         * bitmap that allows every port (all zero, from the clearing above,
         * and the 0xFF end byte). The bitmap, not IOPL=3, is what lets CPL 3
         * do port I/O: the test machines' CPL-0 emulator drops IOPL on the
         * iretq to CPL 3. */
        movl    $RT_IST_EXC, RT_TSS + 0x04      /* RSP0 */
        movl    $RT_IST_EXC, RT_TSS + 0x24      /* IST1 */
        movl    $RT_IST_IRQ, RT_TSS + 0x2C      /* IST2 */
        movl    $RT_IST_NMI, RT_TSS + 0x34      /* IST3 */
        movw    $TSS_IOPB, RT_TSS + 0x66
        movb    $0xFF, RT_TSS + TSS_LIMIT

        /* IDT: 256 interrupt gates (DPL 0, so `int n` from CPL 3 faults),
         * each to its 16-byte stub. Exceptions run on IST1, except NMI, #DF
         * and #MC on IST3; vectors 32-255 on IST2. */
        mov     $RT_IDT, %edi
        mov     $vector_stubs, %eax
        xor     %ecx, %ecx
5:      mov     %eax, %edx
        and     $0xFFFF, %edx
        or      $(SEL_KCODE64 << 16), %edx
        mov     %edx, (%edi)                    /* offset 15:0, selector */
        mov     %eax, %edx
        and     $0xFFFF0000, %edx
        or      $0x8E00, %edx                   /* P, DPL 0, 64-bit interrupt gate */
        mov     $2, %ebx                        /* IST2 */
        cmp     $32, %ecx
        jae     6f
        mov     $1, %ebx                        /* IST1 */
        cmp     $2, %ecx
        je      7f
        cmp     $8, %ecx
        je      7f
        cmp     $18, %ecx
        jne     6f
7:      mov     $3, %ebx                        /* IST3 */
6:      or      %ebx, %edx
        mov     %edx, 4(%edi)                   /* offset 31:16, flags, IST */
        /* 8(%edi), offset 63:32, and 12(%edi) stay 0 */
        add     $16, %edi
        add     $16, %eax
        inc     %ecx
        cmp     $256, %ecx
        jb      5b

        /* The boot info block. */
        mov     $RT_BOOTINFO, %edi
        movl    $0x58425053, BI_MAGIC(%edi)     /* "SPBXBOOT" */
        movl    $0x544F4F42, BI_MAGIC + 4(%edi)
        movl    $BI_VERSION_1, BI_VERSION(%edi)
        movl    $BI_TOTAL, BI_SIZE(%edi)
        movl    $RT_PML4, BI_PML4(%edi)
        movl    $RT_IRQ_COUNTS, BI_IRQ_COUNTS(%edi)
        movl    $STACK_BOTTOM, BI_STACK_BOTTOM(%edi)
        movl    $STACK_TOP, BI_STACK_TOP(%edi)
        mov     image_start, %eax
        mov     %eax, BI_IMAGE_START(%edi)
        mov     payload_end, %eax
        mov     %eax, BI_IMAGE_END(%edi)
        mov     tsc_loader, %eax
        mov     %eax, BI_TSC_LOADER(%edi)
        mov     tsc_loader + 4, %eax
        mov     %eax, BI_TSC_LOADER + 4(%edi)
        movzbl  boot_drive, %eax
        mov     %eax, BI_BOOT_DRIVE(%edi)

        /* Long mode: PAE and SSE (OSFXSR, OSXMMEXCPT) in CR4, CR3, EFER.LME,
         * then paging with MP and NE set and EM and TS clear, so that CPL 3
         * can use SSE (the host target's Rust code does). */
        mov     $((1 << 5) | (1 << 9) | (1 << 10)), %eax
        mov     %eax, %cr4
        mov     $RT_PML4, %eax
        mov     %eax, %cr3
        mov     $0xC0000080, %ecx               /* EFER */
        rdmsr
        or      $(1 << 8), %eax                 /* LME */
        wrmsr
        mov     %cr0, %eax
        and     $~((1 << 2) | (1 << 3) | (1 << 16) | (1 << 29) | (1 << 30)), %eax  /* EM TS WP NW CD */
        or      $((1 << 31) | (1 << 5) | (1 << 1) | 1), %eax                       /* PG NE MP PE */
        mov     %eax, %cr0
        ljmp    $SEL_KCODE64, $long_mode

        .code64
long_mode:
        mov     $SEL_DATA32, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     %eax, %fs
        mov     %eax, %gs
        mov     $0x7C00, %esp
        mov     $SEL_TSS, %eax
        ltr     %ax
        lidt    idt_descriptor

        /* 8259s: vectors 0x20-0x2F (so a stray IRQ never looks like an
         * exception), every line masked. The guest uses the IOAPIC. */
        mov     $0x11, %al                      /* ICW1: init, ICW4 follows */
        out     %al, $0x20
        out     %al, $0xA0
        mov     $0x20, %al                      /* ICW2: vector base */
        out     %al, $0x21
        mov     $0x28, %al
        out     %al, $0xA1
        mov     $0x04, %al                      /* ICW3: slave on IRQ2 */
        out     %al, $0x21
        mov     $0x02, %al
        out     %al, $0xA1
        mov     $0x01, %al                      /* ICW4: 8086 mode */
        out     %al, $0x21
        out     %al, $0xA1
        mov     $0xFF, %al                      /* OCW1: mask all */
        out     %al, $0x21
        out     %al, $0xA1

        rdtsc
        mov     %eax, RT_BOOTINFO + BI_TSC_ENTRY
        mov     %edx, RT_BOOTINFO + BI_TSC_ENTRY + 4

        /* To the entry at CPL 3 with IOPL=0 and IF=1, RDI = boot info.
         * Nothing can interrupt yet: the 8259s and IOAPIC inputs are
         * masked and the LAPIC is software-disabled; the guest masks and
         * unmasks with the LAPIC's task priority (CPL 3 cannot cli/sti with
         * IOPL=0, and IOPL=3 does not survive the iretq here anyway). */
        mov     $SEL_UDATA, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %fs
        mov     %eax, %gs
        push    $SEL_UDATA                      /* SS */
        push    $STACK_TOP                      /* RSP */
        push    $0x0202                         /* RFLAGS: IF */
        push    $SEL_UCODE64                    /* CS */
        mov     entry_point, %eax
        push    %rax                            /* RIP */
        mov     $RT_BOOTINFO, %edi
        xor     %eax, %eax
        xor     %ebx, %ebx
        xor     %ecx, %ecx
        xor     %edx, %edx
        xor     %esi, %esi
        xor     %ebp, %ebp
        iretq

/* --- CPL 0 after boot: interrupt and exception stubs ------------------------- */

/* One 16-byte stub per vector: exceptions that push no error code push a 0,
 * then every stub pushes its vector. */
        .p2align 4
vector_stubs:
        .set    vec, 0
        .rept   256
        .p2align 4
        .if     vec < 32
        .if     !(vec == 8 || vec == 10 || vec == 11 || vec == 12 || vec == 13 || vec == 14 || vec == 17 || vec == 21 || vec == 29 || vec == 30)
        push    $0
        .endif
        push    $vec
        jmp     exception_entry
        .else
        push    $vec
        jmp     interrupt_entry
        .endif
        .set    vec, vec + 1
        .endr

/* Count the vector where CPL 3 reads it, acknowledge it at the local APIC
 * (except the spurious vector 0xFF, which must not be) and return. Nothing
 * else: every instruction here is emulated. */
interrupt_entry:
        push    %rax
        mov     8(%rsp), %eax
        lock incq RT_IRQ_COUNTS(,%rax,8)
        cmp     $0xFF, %eax
        je      1f
        mov     $0xFEE000B0, %eax               /* LAPIC EOI */
        movl    $0, (%rax)
1:      pop     %rax
        add     $8, %rsp
        iretq

/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. Print
 * "SPICEBOX-<NAME>-FAIL exception <vector> rip=... err=... cr2=... rsp=... cs=...
 * rflags=..."
 * (the guest writes its name to the boot info block first thing; before
 * that the line reads "SPICEBOX-FAIL exception ...") and power off. */
exception_entry:
        cld
        mov     %rsp, %rbp
        lea     msg_spicebox(%rip), %rsi
        call    puts64
        mov     $(RT_BOOTINFO + BI_NAME), %esi
        cmpb    $0, (%rsi)
        je      1f
        mov     $32, %ecx                       /* at most 32 bytes of name */
2:      lodsb
        test    %al, %al
        jz      3f
        call    putc64
        loop    2b
3:      mov     $'-', %al
        call    putc64
1:      lea     msg_exception(%rip), %rsi
        call    puts64
        mov     0(%rbp), %rax
        mov     $2, %ecx
        call    hex64
        lea     msg_rip(%rip), %rsi
        call    puts64
        mov     16(%rbp), %rax
        mov     $16, %ecx
        call    hex64
        lea     msg_err(%rip), %rsi
        call    puts64
        mov     8(%rbp), %rax
        mov     $8, %ecx
        call    hex64
        lea     msg_cr2(%rip), %rsi
        call    puts64
        mov     %cr2, %rax
        mov     $16, %ecx
        call    hex64
        lea     msg_rsp(%rip), %rsi
        call    puts64
        mov     40(%rbp), %rax
        mov     $16, %ecx
        call    hex64
        lea     msg_cs(%rip), %rsi
        call    puts64
        mov     24(%rbp), %rax
        mov     $4, %ecx
        call    hex64
        lea     msg_rflags(%rip), %rsi
        call    puts64
        mov     32(%rbp), %rax
        mov     $8, %ecx
        call    hex64
        lea     msg_crlf(%rip), %rsi
        call    puts64

        mov     $ACPI_PM1A_CNT_PORT, %dx
        mov     $ACPI_POWER_OFF_VALUE, %ax
        out     %ax, %dx
        /* Still here 2-3 RTC seconds later: say so, then stop. */
        mov     $3, %ecx
4:      call    rtc_seconds64
        mov     %al, %bl
5:      call    rtc_seconds64
        cmp     %al, %bl
        je      5b
        loop    4b
        lea     msg_poweroff_failed(%rip), %rsi
        call    puts64
6:      cli
        hlt
        jmp     6b

rtc_seconds64:
        xor     %al, %al
        out     %al, $0x70
        in      $0x71, %al
        ret

/* AL to COM1, waiting for THR empty. Preserves everything but flags. */
putc64:
        push    %rdx
        push    %rax
        mov     $SERIAL_LSR, %dx
1:      in      %dx, %al
        test    $0x20, %al
        jz      1b
        pop     %rax
        mov     $SERIAL_PORT, %dx
        out     %al, %dx
        pop     %rdx
        ret

/* The NUL-terminated string at RSI. */
puts64:
1:      lodsb
        test    %al, %al
        jz      2f
        call    putc64
        jmp     1b
2:      ret

/* The low ECX hex digits of RAX, most significant first. */
hex64:
        mov     %rax, %rdx
        mov     %ecx, %ebx
        shl     $2, %ecx
        neg     %ecx
        add     $64, %ecx
        shl     %cl, %rdx                       /* digits to the top */
        mov     %ebx, %ecx
1:      rol     $4, %rdx
        mov     %edx, %eax
        and     $0xF, %eax
        cmp     $10, %eax
        jb      2f
        add     $('a' - '0' - 10), %eax
2:      add     $'0', %eax
        call    putc64
        loop    1b
        ret

/* --- data ---------------------------------------------------------------------- */

        .p2align 3
gdt:
        .quad   0
        .quad   0x00009B000000FFFF              /* 0x08 code16: base 0, limit 64 KiB */
        .quad   0x000093000000FFFF              /* 0x10 data16 */
        .quad   0x00CF9B000000FFFF              /* 0x18 code32: flat */
        .quad   0x00CF93000000FFFF              /* 0x20 data32: flat (also CPL-0 data in long mode) */
        .quad   0x00209B0000000000              /* 0x28 code64, DPL 0 */
        .quad   0x00CFF3000000FFFF              /* 0x30 data, DPL 3 */
        .quad   0x0020FB0000000000              /* 0x38 code64, DPL 3 */
        /* 0x40 64-bit TSS (available), base RT_TSS, with the I/O bitmap */
        .word   TSS_LIMIT
        .word   RT_TSS & 0xFFFF
        .byte   (RT_TSS >> 16) & 0xFF
        .byte   0x89
        .byte   0
        .byte   (RT_TSS >> 24) & 0xFF
        .long   0
        .long   0
gdt_end:

gdt_descriptor:
        .word   gdt_end - gdt - 1
        .long   gdt

idt_descriptor:
        .word   256 * 16 - 1
        .quad   RT_IDT

        .p2align 2
disk_address_packet_rt:
        .byte   0x10, 0
dap_count:
        .word   0
        .word   0, BOUNCE_SEG                   /* buffer offset, segment */
dap_lba:
        .quad   0

tsc_loader:     .quad 0
load_addr:      .long 0
image_start:    .long 0
payload_end:    .long 0
entry_point:    .long 0
sectors_left:   .long 0

msg_loader_fail:        .asciz "SPICEBOX-FAIL loader "
msg_no_e820:            .asciz "e820"
msg_bad_magic:          .asciz "payload-magic"
msg_bad_header:         .asciz "payload-header"
msg_read_error:         .asciz "disk-read"
msg_crlf:               .asciz "\r\n"
msg_spicebox:           .asciz "SPICEBOX-"
msg_exception:          .asciz "FAIL exception "
msg_rip:                .asciz " rip="
msg_err:                .asciz " err="
msg_cr2:                .asciz " cr2="
msg_rsp:                .asciz " rsp="
msg_cs:                 .asciz " cs="
msg_rflags:             .asciz " rflags="

image_end:
        .section .note.GNU-stack, "", @progbits
