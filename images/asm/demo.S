/*
 * demo.S: the built-in demo disk spicebox boots when the user gives no disk.
 *
 * It shows a banner, then echoes every character typed on the keyboard
 * (int 16h) or received on COM1 to both the screen and COM1, and powers off
 * on 'p'. It stays in real mode and uses the BIOS for the keyboard and the
 * screen, so it exercises the same paths a DOS-era guest or a boot loader
 * would.
 *
 * Commands are looked up in `command_table` (key byte + handler address);
 * any other character is echoed. 'g' and 't' switch to the graphics scene
 * and back (scene.inc).
 */
        .include "boot.inc"

main:
        mov     $msg_banner, %si
        call    puts_both
        mov     $msg_ready, %si
        call    puts_serial
        mov     0x46C, %ax              /* BIOS tick count (18.2 Hz), low word */
        mov     %ax, last_input_tick

main_loop:
        /* COM1 first: without a FIFO the UART holds a single byte, so it
         * must be drained before the next one arrives. */
        mov     $SERIAL_LSR, %dx
        in      %dx, %al
        test    $0x01, %al              /* LSR.DR: a received byte is waiting */
        jz      1f
        mov     $SERIAL_PORT, %dx
        in      %dx, %al
        call    handle_char
        jmp     input_seen

1:      mov     $0x01, %ah              /* int 16h AH=01h: keystroke waiting? ZF=1 if none */
        int     $0x16
        jz      idle
        xor     %ah, %ah                /* AH=00h: take it; AL = ASCII (0 for special keys) */
        int     $0x16
        test    %al, %al
        jz      input_seen
        call    handle_char

input_seen:
        mov     0x46C, %ax
        mov     %ax, last_input_tick
        jmp     main_loop

        /* Sleep in HLT once no input arrived for two timer ticks, so an idle
         * demo does not spin a host CPU. The timer interrupt (and the keyboard
         * one) wakes us; polling stays tight right after input, so pasted
         * serial text is not slowed to one byte per tick. If the timer never
         * ticks the condition never holds and we simply keep polling, which
         * can never hang the demo. */
idle:
        mov     0x46C, %ax
        sub     last_input_tick, %ax
        cmp     $2, %ax
        jb      main_loop
        sti
        hlt
        jmp     main_loop

/* Dispatch the character in AL: a command key, or echo. */
handle_char:
        mov     $command_table, %si
1:      mov     (%si), %ah
        test    %ah, %ah
        jz      echo_char
        cmp     %al, %ah
        je      2f
        add     $3, %si
        jmp     1b
2:      jmp     *1(%si)

/* Echo AL. Enter arrives as CR from the keyboard and as CR, LF or CR LF from
 * a terminal; each of those becomes exactly one CR LF. */
echo_char:
        cmp     $'\n', %al
        jne     1f
        cmpb    $0, last_was_cr
        movb    $0, last_was_cr
        jne     3f                      /* LF right after CR: already done */
        jmp     2f
1:      cmp     $'\r', %al
        jne     4f
        movb    $1, last_was_cr
2:      mov     $msg_crlf, %si
        call    puts_both
3:      ret
4:      movb    $0, last_was_cr
        jmp     putc_both

cmd_power_off:
        mov     $msg_poweroff, %si
        call    puts_both
        jmp     power_off

command_table:
        .byte   'p'
        .word   cmd_power_off
        .byte   'g'
        .word   cmd_graphics
        .byte   't'
        .word   cmd_text
        .byte   0                       /* end of table */

        .include "scene.inc"

last_input_tick:
        .word   0
last_was_cr:
        .byte   0

msg_banner:
        .asciz  "spicebox demo: type to echo, g = graphics, t = text, p = power off\r\n"
msg_ready:
        .asciz  "SPICEBOX-DEMO-READY\r\n"
msg_poweroff:
        .asciz  "\r\nSPICEBOX-POWEROFF\r\n"
msg_crlf:
        .asciz  "\r\n"

image_end:
        .section .note.GNU-stack, "", @progbits
