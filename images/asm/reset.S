/*
 * reset.S: exercises the three ways a PC guest resets itself, across four
 * boots, keeping a boot counter in CMOS byte 0x7E (battery-backed RAM that
 * survives a reset but not a power cycle; outside the checksummed range
 * 0x10-0x2D and unused by SeaBIOS and QEMU):
 *   boot 1: reset control register 0xCF9 (PIIX3/ICH9 "RCR"), as Linux's
 *           reboot=pci does;
 *   boot 2: i8042 "pulse output port" command 0xFE, as reboot=kbd does;
 *   boot 3: triple fault, as reboot=triple does;
 *   boot 4: clear the counter, report success, power off.
 * Each boot prints "SPICEBOX-RESET-BOOT <n>". If the 0xCF9 or i8042 reset
 * does not happen within a few seconds, the guest prints
 * "SPICEBOX-RESET-FAIL <method>" and powers off, so a test need not wait for
 * its own timeout. (A triple fault leaves nothing to report from.)
 */
        .include "boot.inc"

        /* RESET_CMOS_INDEX and RESET_BOOTS come from build.rs (--defsym). */
        .set    CMOS_BOOT_COUNTER, RESET_CMOS_INDEX
        .if     RESET_BOOTS != 4
        .error  "reset.S has one boot per reset method (3) and a last one: RESET_BOOTS must be 4"
        .endif

main:
        mov     $CMOS_BOOT_COUNTER, %al
        out     %al, $0x70
        in      $0x71, %al
        cmp     $(RESET_BOOTS - 1), %al /* 0 = fresh; any value past 3 is stale garbage */
        jbe     1f
        xor     %al, %al
1:      inc     %al
        mov     %al, %bl                /* BL = this boot's number, 1..4 */
        mov     $CMOS_BOOT_COUNTER, %al
        out     %al, $0x70
        mov     %bl, %al
        out     %al, $0x71

        mov     $msg_boot, %si
        call    puts_both
        mov     %bl, %al
        add     $'0', %al
        call    putc_both
        mov     $msg_crlf, %si
        call    puts_both

        cmp     $1, %bl
        je      reset_cf9
        cmp     $2, %bl
        je      reset_i8042
        cmp     $3, %bl
        je      reset_triple_fault

        /* Boot 4: leave CMOS clean so the next run starts at boot 1. */
        mov     $CMOS_BOOT_COUNTER, %al
        out     %al, $0x70
        xor     %al, %al
        out     %al, $0x71
        mov     $msg_done, %si
        call    puts_both
        jmp     power_off

/* Bit 1 (SYS_RST) selects a hard reset, bit 2 (RST_CPU) performs it on its
 * 0->1 edge: writing 0x02 then 0x06 is the sequence Linux uses. */
reset_cf9:
        mov     $0xCF9, %dx
        mov     $0x02, %al
        out     %al, %dx
        mov     $0x06, %al
        out     %al, %dx
        mov     $msg_fail_cf9, %si
        jmp     reset_failed

/* Wait (bounded) for the controller's input buffer to drain, as a real
 * i8042 ignores commands written while it is busy, then pulse the reset
 * line. */
reset_i8042:
        mov     $0xFFFF, %cx
1:      in      $0x64, %al
        test    $0x02, %al
        loopnz  1b
        mov     $0xFE, %al
        out     %al, $0x64
        mov     $msg_fail_i8042, %si
        jmp     reset_failed

/* Triple fault from 32-bit protected mode with an empty IDT: the #UD from
 * UD2 has no gate (vector beyond the IDT limit), so the CPU raises #GP, which
 * has no gate either, hence #DF, which has none: shutdown. The VMM sees a
 * shutdown exit and must reset the machine. Protected mode is used because a
 * real-mode INT through a zero-limit IDT is not reliably faulted by
 * instruction emulators. */
reset_triple_fault:
        cli
        lgdt    gdt_descriptor
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmp    $0x08, $1f
        .code32
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        lidt    null_idt_descriptor
        ud2
        /* Nothing after UD2 can run: the CPU is in shutdown until the VMM
         * resets it. A VMM that ignores the shutdown leaves the guest silent
         * after "BOOT 3", which a test sees as a timeout. */
        .code16

reset_failed:
        push    %si
        mov     $3, %cx
        call    rtc_wait_seconds
        pop     %si
        call    puts_both
        jmp     power_off

        .p2align 3
gdt:
        .quad   0                       /* null */
        .quad   0x00CF9A000000FFFF      /* 0x08: flat 32-bit code */
        .quad   0x00CF92000000FFFF      /* 0x10: flat 32-bit data */
gdt_end:
gdt_descriptor:
        .word   gdt_end - gdt - 1
        .long   gdt
null_idt_descriptor:
        .word   0                       /* limit 0: no vector has a gate */
        .long   0

msg_boot:
        .asciz  "SPICEBOX-RESET-BOOT "
msg_crlf:
        .asciz  "\r\n"
msg_done:
        .asciz  "SPICEBOX-RESET-DONE\r\n"
msg_fail_cf9:
        .asciz  "SPICEBOX-RESET-FAIL cf9\r\n"
msg_fail_i8042:
        .asciz  "SPICEBOX-RESET-FAIL i8042\r\n"

image_end:
        .section .note.GNU-stack, "", @progbits
