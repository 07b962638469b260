/*
 * acpi.S: finds and checks the ACPI tables the way an OS does, then takes a
 * power-button press through them:
 *
 *   1. find the RSDP on a 16-byte boundary in the first KiB of the EBDA or in
 *      0xE0000-0xFFFFF (ACPI 6.5 §5.2.5.1), checking its signature and both
 *      checksums;
 *   2. check the RSDT and (revision 2 and up) the XSDT, and every table they
 *      list; take the FADT ("FACP") and MADT ("APIC") from the XSDT if there is
 *      one, else from the RSDT;
 *   3. from the FADT: the DSDT (X_DSDT if set) with its checksum, the FACS
 *      (signature, length), the SCI, SMI_CMD/ACPI_ENABLE, the PM1a blocks;
 *      from the MADT: enabled local APICs, the IOAPIC address, the SCI's
 *      interrupt source override; from the DSDT: SLP_TYPa of \_S5;
 *   4. print them on one line (SPICEBOX-ACPI-TABLES key=hex ...);
 *   5. go to ACPI mode if SCI_EN is clear (QEMU: write ACPI_ENABLE to
 *      SMI_CMD), set the SCI's ELCR bit (level-triggered, as Linux does in PIC
 *      mode), clear PWRBTN_STS, set PWRBTN_EN, and print SPICEBOX-ACPI-READY;
 *   6. wait (up to 60 s) for PWRBTN_STS (the host's QMP system_powerdown),
 *      then see the SCI pending in the 8259's IRR (read with OCW3; interrupts
 *      stay off), clear PWRBTN_STS and see the level drop out of the IRR;
 *   7. print SPICEBOX-ACPI-OK and enter S5 with \_S5's SLP_TYP, PM1a_CNT
 *      from the FADT.
 * Any failed step prints "SPICEBOX-ACPI-FAIL <step> [hex]" and powers off
 * through the fixed 0x604 convention.
 *
 * 32-bit flat protected mode with interrupts off, like virtio-blk.S: the
 * tables SeaBIOS installs sit near the top of low RAM.
 */
        .include "boot.inc"

        .set    EBDA_SEG_PTR, 0x40E     /* BDA word: EBDA segment */
        .set    BIOS_AREA, 0xE0000
        .set    BIOS_AREA_END, 0x100000

        .set    PWRBTN, 1 << 8          /* PM1 status and enable bit */
        .set    SCI_EN, 1 << 0          /* PM1 control */
        .set    SLP_EN, 1 << 13
        .set    SLP_TYP_MASK, 7 << 10

        .set    PIC1_CMD, 0x20
        .set    PIC2_CMD, 0xA0
        .set    ELCR1, 0x4D0
        .set    OCW3_READ_IRR, 0x0A

main:
        mov     $msg_banner, %si
        call    puts_serial
        mov     EBDA_SEG_PTR, %ax       /* DS = 0: the BDA word at 0x40E */
        mov     %ax, ebda_segment

        in      $0x92, %al              /* fast A20, as virtio-blk.S */
        or      $0x02, %al
        and     $0xFE, %al
        out     %al, $0x92

        cli
        lgdt    gdt_descriptor
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmp    $0x08, $protected_mode

        .code32
protected_mode:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %fs
        mov     %ax, %gs
        mov     %ax, %ss
        mov     $0x7C00, %esp

        call    find_rsdp
        call    walk_roots
        call    read_fadt
        call    read_madt
        call    read_s5
        call    report

        call    enter_acpi_mode
        call    arm_power_button
        mov     $msg_ready, %esi
        call    puts32

        call    wait_power_button
        call    check_sci_cleared
        mov     $msg_ok, %esi
        call    puts32
        jmp     sleep_s5

/* ---------------------------------------------------------------------------
 * Finding and checking tables
 */

/* Byte sum of ECX bytes at ESI into AL (0 means the checksum holds).
 * Clobbers ECX, ESI. */
checksum:
        xor     %al, %al
1:      add     (%esi), %al
        inc     %esi
        loop    1b
        ret

/* Is there a valid RSDP at ESI? ZF set if so. Preserves ESI. */
check_rsdp:
        push    %esi
        cmpl    $0x20445352, (%esi)     /* "RSD " */
        jne     9f
        cmpl    $0x20525450, 4(%esi)    /* "PTR " */
        jne     9f
        mov     $20, %ecx
        call    checksum
        test    %al, %al
        jnz     9f
        mov     (%esp), %esi
        cmpb    $2, 15(%esi)            /* revision 2+: the extended checksum too */
        jb      8f
        mov     20(%esi), %ecx
        cmp     $36, %ecx
        jb      9f
        cmp     $4096, %ecx
        ja      9f
        call    checksum
        test    %al, %al
        jnz     9f
8:      xor     %eax, %eax              /* ZF = 1 */
9:      pop     %esi
        ret

/* Scan [ESI, EDI) in 16-byte steps; ZF set and ESI at the RSDP if found. */
scan_rsdp:
1:      cmp     %edi, %esi
        jae     2f
        call    check_rsdp
        je      3f
        add     $16, %esi
        jmp     1b
2:      or      $1, %esi                /* ZF = 0 (ESI was 16-byte aligned) */
3:      ret

find_rsdp:
        movzwl  ebda_segment, %esi
        shl     $4, %esi
        test    %esi, %esi
        jz      1f
        lea     1024(%esi), %edi
        call    scan_rsdp
        je      2f
1:      mov     $BIOS_AREA, %esi
        mov     $BIOS_AREA_END, %edi
        call    scan_rsdp
        je      2f
        mov     $step_rsdp, %esi
        jmp     fail
2:      mov     %esi, rsdp
        ret

/* Check the table at EAX: header length sane, checksum 0, and signature EDX
 * (0: any). Fails with the step in EBX. Preserves EAX. */
check_table:
        test    %eax, %eax
        jz      9f
        test    %edx, %edx
        jz      1f
        cmp     (%eax), %edx
        jne     9f
1:      mov     4(%eax), %ecx
        cmp     $36, %ecx
        jb      9f
        cmp     $0x100000, %ecx
        ja      9f
        mov     %eax, %esi
        push    %eax
        call    checksum
        test    %al, %al
        pop     %eax
        jnz     9f
        ret
9:      mov     %ebx, %esi
        jmp     fail_value

/* Check every table the root table at EAX lists (entries of EDI bytes: 4 in
 * the RSDT, 8 in the XSDT); remember the FADT and the MADT. */
check_entries:
        lea     36(%eax), %esi
        mov     4(%eax), %ebp
        add     %eax, %ebp              /* end of the table */
1:      cmp     %ebp, %esi
        jae     4f
        cmp     $8, %edi
        jne     2f
        cmpl    $0, 4(%esi)             /* a table above 4 GiB: out of reach */
        jne     5f
2:      mov     (%esi), %eax
        push    %esi
        xor     %edx, %edx
        mov     $step_table, %ebx
        call    check_table
        pop     %esi
        cmpl    $0x50434146, (%eax)     /* "FACP" */
        jne     3f
        mov     %eax, fadt
3:      cmpl    $0x43495041, (%eax)     /* "APIC" */
        jne     6f
        mov     %eax, madt
6:      add     %edi, %esi
        jmp     1b
4:      ret
5:      mov     4(%esi), %eax
        mov     $step_high_table, %esi
        jmp     fail_value

walk_roots:
        mov     rsdp, %ebx
        movzbl  15(%ebx), %eax
        mov     %eax, revision
        mov     16(%ebx), %eax          /* RSDT: every revision has one */
        mov     %eax, rsdt
        mov     $0x54445352, %edx       /* "RSDT" */
        mov     $step_rsdt, %ebx
        call    check_table
        mov     $4, %edi
        call    check_entries
        mov     rsdp, %ebx
        cmpb    $2, 15(%ebx)
        jb      1f
        cmpl    $0, 28(%ebx)
        jne     2f
        mov     24(%ebx), %eax
        test    %eax, %eax
        jz      1f
        mov     %eax, xsdt
        mov     $0x54445358, %edx       /* "XSDT" */
        mov     $step_xsdt, %ebx
        call    check_table
        /* An OS that has an XSDT uses it: its entries win. */
        movl    $0, fadt
        movl    $0, madt
        mov     $8, %edi
        call    check_entries
1:      cmpl    $0, fadt
        je      3f
        cmpl    $0, madt
        je      4f
        ret
2:      mov     28(%ebx), %eax
        mov     $step_high_table, %esi
        jmp     fail_value
3:      mov     $step_fadt, %esi
        jmp     fail
4:      mov     $step_madt, %esi
        jmp     fail

read_fadt:
        mov     fadt, %ebx
        mov     40(%ebx), %eax          /* DSDT */
        cmpl    $148, 4(%ebx)           /* X_DSDT (ACPI 2.0+) wins if set */
        jb      1f
        cmpl    $0, 140(%ebx)
        je      1f
        cmpl    $0, 144(%ebx)
        jne     9f
        mov     140(%ebx), %eax
1:      mov     %eax, dsdt
        mov     $0x54445344, %edx       /* "DSDT" */
        push    %ebx
        mov     $step_dsdt, %ebx
        call    check_table
        pop     %ebx

        mov     36(%ebx), %eax          /* FIRMWARE_CTRL */
        cmpl    $140, 4(%ebx)
        jb      2f
        cmpl    $0, 132(%ebx)           /* X_FIRMWARE_CTRL */
        je      2f
        mov     132(%ebx), %eax
2:      test    %eax, %eax
        jz      8f
        cmpl    $0x53434146, (%eax)     /* "FACS" (no checksum) */
        jne     8f
        cmpl    $64, 4(%eax)
        jb      8f
        test    $63, %eax
        jnz     8f

        movzwl  46(%ebx), %eax
        mov     %eax, sci
        mov     48(%ebx), %eax
        mov     %eax, smi_cmd
        movzbl  52(%ebx), %eax
        mov     %eax, acpi_enable
        mov     56(%ebx), %eax
        mov     %eax, pm1a_evt
        mov     64(%ebx), %eax
        mov     %eax, pm1a_cnt
        movzbl  88(%ebx), %eax
        shr     $1, %eax                /* PM1_EN is the second half */
        add     pm1a_evt, %eax
        mov     %eax, pm1a_en
        cmpl    $0, pm1a_evt
        je      7f
        cmpl    $0, pm1a_cnt
        je      7f
        cmpl    $15, sci
        ja      7f
        ret
7:      mov     $step_pm1, %esi
        jmp     fail
8:      mov     $step_facs, %esi
        jmp     fail_value
9:      mov     $step_high_table, %esi
        jmp     fail

read_madt:
        mov     madt, %ebx
        lea     44(%ebx), %esi
        mov     4(%ebx), %ebp
        add     %ebx, %ebp
1:      cmp     %ebp, %esi
        jae     5f
        movzbl  1(%esi), %ecx
        cmp     $2, %ecx                /* a zero length would loop forever */
        jb      6f
        movzbl  (%esi), %eax
        cmp     $0, %eax                /* processor local APIC */
        jne     2f
        testb   $1, 4(%esi)
        jz      4f
        incl    lapics
        jmp     4f
2:      cmp     $1, %eax                /* I/O APIC: the first one's address */
        jne     3f
        cmpl    $0, ioapic
        jne     4f
        mov     4(%esi), %eax
        mov     %eax, ioapic
        jmp     4f
3:      cmp     $2, %eax                /* interrupt source override */
        jne     4f
        movzbl  3(%esi), %eax
        cmp     sci, %eax
        jne     4f
        movzwl  8(%esi), %eax
        mov     %eax, sci_flags
4:      add     %ecx, %esi
        jmp     1b
5:      cmpl    $0, lapics
        je      6f
        cmpl    $0, ioapic
        je      6f
        ret
6:      mov     $step_madt_entries, %esi
        jmp     fail

/* SLP_TYPa of \_S5: after the name "_S5_", PackageOp (0x12), a PkgLength
 * (1 to 4 bytes, the count in the lead byte's top 2 bits), NumElements, then
 * the first element: ZeroOp, OneOp or BytePrefix n. */
read_s5:
        mov     dsdt, %esi
        mov     4(%esi), %ebp
        add     %esi, %ebp
        sub     $8, %ebp
        add     $36, %esi
1:      cmp     %ebp, %esi
        jae     9f
        cmpl    $0x5F35535F, (%esi)     /* "_S5_" */
        je      2f
        inc     %esi
        jmp     1b
2:      cmpb    $0x12, 4(%esi)
        jne     9f
        movzbl  5(%esi), %eax
        shr     $6, %eax
        lea     7(%esi,%eax), %esi      /* past lead byte, follow bytes, NumElements */
        movzbl  (%esi), %eax
        cmp     $1, %eax                /* ZeroOp, OneOp */
        jbe     3f
        cmp     $0x0A, %eax
        jne     9f
        movzbl  1(%esi), %eax
3:      cmp     $7, %eax
        ja      9f
        mov     %eax, s5
        ret
9:      mov     $step_s5, %esi
        jmp     fail

/* One line with everything found, as key=hex pairs (images::AcpiReport). */
report:
        mov     $report_fields, %ebx
1:      mov     (%ebx), %esi
        test    %esi, %esi
        jz      2f
        call    puts32
        mov     4(%ebx), %eax
        mov     (%eax), %eax
        call    print_hex32
        add     $8, %ebx
        jmp     1b
2:      mov     $msg_crlf, %esi
        jmp     puts32

/* ---------------------------------------------------------------------------
 * The power button
 */

enter_acpi_mode:
        mov     pm1a_cnt, %edx
        in      %dx, %ax
        test    $SCI_EN, %ax
        jnz     2f
        mov     smi_cmd, %edx           /* no SMI_CMD: nothing can switch modes */
        test    %edx, %edx
        jz      9f
        mov     acpi_enable, %eax
        out     %al, %dx
        mov     $3, %ecx
        call    timeout_start
1:      mov     pm1a_cnt, %edx
        in      %dx, %ax
        test    $SCI_EN, %ax
        jnz     2f
        call    timeout_check
        jnc     1b
9:      mov     $step_acpi_mode, %esi
        jmp     fail
2:      ret

/* The 8259's IRR bit of the SCI into ZF (ZF clear = pending). */
sci_pending:
        mov     sci, %ecx
        mov     $PIC1_CMD, %edx
        cmp     $8, %ecx
        jb      1f
        mov     $PIC2_CMD, %edx
        sub     $8, %ecx
1:      mov     $OCW3_READ_IRR, %al
        out     %al, %dx
        in      %dx, %al
        mov     %al, irr
        mov     $1, %ah
        shl     %cl, %ah
        test    %ah, %al
        ret

arm_power_button:
        /* ELCR: the SCI is level-triggered (Linux: acpi_pic_sci_set_trigger). */
        mov     sci, %ecx
        mov     $ELCR1, %edx
        cmp     $8, %ecx
        jb      1f
        inc     %edx
        sub     $8, %ecx
1:      mov     $1, %ah
        shl     %cl, %ah
        in      %dx, %al
        or      %ah, %al
        out     %al, %dx

        mov     pm1a_evt, %edx          /* clear a stale press (write 1 to clear) */
        mov     $PWRBTN, %ax
        out     %ax, %dx
        mov     pm1a_en, %edx
        in      %dx, %ax
        or      $PWRBTN, %ax
        out     %ax, %dx
        call    sci_pending
        jnz     9f
        ret
9:      movzbl  irr, %eax
        mov     $step_sci_early, %esi
        jmp     fail_value

wait_power_button:
        mov     $60, %ecx
        call    timeout_start
1:      mov     pm1a_evt, %edx
        in      %dx, %ax
        test    $PWRBTN, %ax
        jnz     2f
        call    timeout_check
        jnc     1b
        mov     $step_pwrbtn, %esi
        jmp     fail
        /* The status is set: the SCI must be asserted by now (both VMMs set
         * the bit and raise the line in one step); give it a second. */
2:      mov     $2, %ecx
        call    timeout_start
3:      call    sci_pending
        jnz     4f
        call    timeout_check
        jnc     3b
        movzbl  irr, %eax
        mov     $step_sci, %esi
        jmp     fail_value
4:      mov     $msg_pwrbtn, %esi
        call    puts32
        movzbl  irr, %eax
        call    print_hex32
        mov     $msg_crlf, %esi
        jmp     puts32

check_sci_cleared:
        mov     pm1a_evt, %edx
        mov     $PWRBTN, %ax
        out     %ax, %dx
        in      %dx, %ax
        test    $PWRBTN, %ax
        jnz     8f
        call    sci_pending             /* level-triggered: the bit follows the line */
        jnz     9f
        ret
8:      mov     $step_pwrbtn_clear, %esi
        jmp     fail
9:      movzbl  irr, %eax
        mov     $step_sci_stuck, %esi
        jmp     fail_value

/* S5 as Linux enters it: SLP_TYP first, then SLP_EN in a second write. */
sleep_s5:
        mov     pm1a_cnt, %edx
        in      %dx, %ax
        and     $(0xFFFF & ~(SLP_TYP_MASK | SLP_EN)), %ax
        mov     s5, %ecx
        shl     $10, %ecx
        or      %cx, %ax
        out     %ax, %dx
        or      $SLP_EN, %ax
        out     %ax, %dx
        mov     $3, %ecx
        call    timeout_start
1:      call    timeout_check
        jnc     1b
        mov     $step_s5_write, %esi
        jmp     fail

/* ---------------------------------------------------------------------------
 * 32-bit helpers (as in virtio-blk.S)
 */

timeout_start:
        mov     %ecx, timeout_left
        call    rtc_seconds32
        mov     %al, timeout_last
        ret
/* CF set once the timeout has passed. */
timeout_check:
        call    rtc_seconds32
        cmp     timeout_last, %al
        je      1f
        mov     %al, timeout_last
        decl    timeout_left
        jnz     1f
        stc
        ret
1:      clc
        ret

rtc_seconds32:
        xor     %al, %al
        out     %al, $0x70
        in      $0x71, %al
        ret

serial_putc32:
        push    %edx
        push    %eax
        mov     $SERIAL_LSR, %dx
1:      in      %dx, %al
        test    $0x20, %al
        jz      1b
        pop     %eax
        mov     $SERIAL_PORT, %dx
        out     %al, %dx
        pop     %edx
        ret

puts32:
1:      mov     (%esi), %al
        inc     %esi
        test    %al, %al
        jz      2f
        call    serial_putc32
        jmp     1b
2:      ret

print_hex32:
        push    %ecx
        push    %edx
        mov     %eax, %edx
        mov     $8, %ecx
1:      rol     $4, %edx
        mov     %dl, %al
        and     $0x0F, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     2f
        add     $('A' - '0' - 10), %al
2:      call    serial_putc32
        loop    1b
        pop     %edx
        pop     %ecx
        ret

/* fail: "SPICEBOX-ACPI-FAIL <step>"; fail_value adds " <EAX in hex>". */
fail:
        push    %esi
        mov     $msg_fail, %esi
        call    puts32
        pop     %esi
        call    puts32
        mov     $msg_crlf, %esi
        call    puts32
        jmp     power_off32
fail_value:
        push    %esi
        push    %eax
        mov     $msg_fail, %esi
        call    puts32
        pop     %eax
        pop     %esi
        push    %eax
        call    puts32
        mov     $' ', %al
        call    serial_putc32
        pop     %eax
        call    print_hex32
        mov     $msg_crlf, %esi
        call    puts32
        /* fall through */

/* The fixed convention, not the FADT's: a failure may be about the FADT. */
power_off32:
        mov     $ACPI_PM1A_CNT_PORT, %dx
        mov     $ACPI_POWER_OFF_VALUE, %ax
        out     %ax, %dx
        mov     $3, %ecx
        call    timeout_start
1:      call    timeout_check
        jnc     1b
        mov     $msg_poweroff_failed, %esi
        call    puts32
2:      cli
        hlt
        jmp     2b

        .code16

/* ---------------------------------------------------------------------------
 * Data
 */
        .p2align 3
gdt:
        .quad   0                       /* null */
        .quad   0x00CF9A000000FFFF      /* 0x08: flat 32-bit code, base 0, 4 GiB */
        .quad   0x00CF92000000FFFF      /* 0x10: flat 32-bit data, base 0, 4 GiB */
gdt_end:
gdt_descriptor:
        .word   gdt_end - gdt - 1
        .long   gdt

        .p2align 2
rsdp:           .long 0
revision:       .long 0
rsdt:           .long 0
xsdt:           .long 0
fadt:           .long 0
madt:           .long 0
dsdt:           .long 0
sci:            .long 0
sci_flags:      .long 0
smi_cmd:        .long 0
acpi_enable:    .long 0
pm1a_evt:       .long 0
pm1a_en:        .long 0
pm1a_cnt:       .long 0
lapics:         .long 0
ioapic:         .long 0
s5:             .long 0
timeout_left:   .long 0
ebda_segment:   .word 0
timeout_last:   .byte 0
irr:            .byte 0

/* (label, variable) pairs of the report line, ended by a 0 label. */
        .p2align 2
report_fields:
        .long   f_rsdp, rsdp
        .long   f_revision, revision
        .long   f_rsdt, rsdt
        .long   f_xsdt, xsdt
        .long   f_lapics, lapics
        .long   f_ioapic, ioapic
        .long   f_pm1a_evt, pm1a_evt
        .long   f_pm1a_cnt, pm1a_cnt
        .long   f_sci, sci
        .long   f_sci_flags, sci_flags
        .long   f_smi_cmd, smi_cmd
        .long   f_s5, s5
        .long   0, 0

msg_banner:             .asciz "spicebox acpi test\r\n"
msg_crlf:               .asciz "\r\n"
msg_ready:              .asciz "SPICEBOX-ACPI-READY\r\n"
msg_pwrbtn:             .asciz "SPICEBOX-ACPI-PWRBTN irr="
msg_ok:                 .asciz "SPICEBOX-ACPI-OK\r\n"
msg_fail:               .asciz "SPICEBOX-ACPI-FAIL "

f_rsdp:                 .asciz "SPICEBOX-ACPI-TABLES rsdp="
f_revision:             .asciz " revision="
f_rsdt:                 .asciz " rsdt="
f_xsdt:                 .asciz " xsdt="
f_lapics:               .asciz " lapics="
f_ioapic:               .asciz " ioapic="
f_pm1a_evt:             .asciz " pm1a_evt="
f_pm1a_cnt:             .asciz " pm1a_cnt="
f_sci:                  .asciz " sci="
f_sci_flags:            .asciz " sci_flags="
f_smi_cmd:              .asciz " smi_cmd="
f_s5:                   .asciz " s5="

step_rsdp:              .asciz "rsdp"
step_rsdt:              .asciz "rsdt"
step_xsdt:              .asciz "xsdt"
step_table:             .asciz "table"
step_high_table:        .asciz "table-above-4g"
step_fadt:              .asciz "no-fadt"
step_madt:              .asciz "no-madt"
step_dsdt:              .asciz "dsdt"
step_facs:              .asciz "facs"
step_pm1:               .asciz "pm1"
step_madt_entries:      .asciz "madt-entries"
step_s5:                .asciz "s5"
step_acpi_mode:         .asciz "acpi-mode"
step_sci_early:         .asciz "sci-early"
step_pwrbtn:            .asciz "pwrbtn-timeout"
step_sci:               .asciz "sci-not-raised"
step_pwrbtn_clear:      .asciz "pwrbtn-clear"
step_sci_stuck:         .asciz "sci-stuck"
step_s5_write:          .asciz "s5-poweroff"

image_end:
        .section .note.GNU-stack, "", @progbits
