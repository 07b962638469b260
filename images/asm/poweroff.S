/*
 * poweroff.S: the smallest end-to-end guest. It proves the VMM runs the BIOS
 * to a boot sector, that COM1 output reaches the host, and that an ACPI S5
 * request stops the VM.
 */
        .include "boot.inc"

main:
        mov     $msg_marker, %si
        call    puts_both
        jmp     power_off

msg_marker:
        .asciz  "SPICEBOX-POWEROFF-TEST\r\n"

image_end:
        .section .note.GNU-stack, "", @progbits
