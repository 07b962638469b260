/*
 * virtio-blk.S: drives a virtio 1.x block device on PCI the way Linux's
 * virtio_pci_modern + virtio_blk drivers do, without any help from the BIOS
 * (SeaBIOS only loads this program), so a VMM's device model is tested
 * against the sequence real guests use:
 *
 *   1. find vendor 0x1AF4 device 0x1042 (modern) or 0x1001 (transitional)
 *      with PCI configuration mechanism #1;
 *   2. walk the capability list for the virtio vendor capabilities (common,
 *      notify, ISR, device config) and resolve their BAR-relative addresses;
 *   3. reset, ACKNOWLEDGE, DRIVER, negotiate VERSION_1 + FLUSH, FEATURES_OK
 *      (and check it stuck), set up queue 0, DRIVER_OK;
 *   4. write sector 2048 with a known pattern, FLUSH, read it back, compare.
 *
 * It prints "SPICEBOX-VIRTIO-OK" or "SPICEBOX-VIRTIO-FAIL <step>" on COM1
 * and powers off. The host can then check the pattern at byte offset 1 MiB
 * of the disk file, which proves the write reached the backing store.
 *
 * The program runs in 32-bit flat protected mode with interrupts off: the
 * device's BARs usually sit just below 4 GiB, out of reach of real mode.
 * Completions are polled, with RTC-based timeouts.
 */
        .include "boot.inc"

/* Fixed addresses in conventional memory between this program (loaded at
 * 0x7C00, a few KiB) and the EBDA, which the BIOS leaves to the OS once it
 * has booted us. All are below 4 GiB, so the high address halves are 0. */
        .set    QUEUE_SIZE, 8
        .set    DESC_TABLE, 0x20000     /* 16 bytes x 8, 16-byte aligned */
        .set    AVAIL_RING, 0x20800     /* flags, idx, ring[8], used_event; 2-byte aligned */
        .set    USED_RING,  0x21000     /* flags, idx, ring[8] {id, len}, avail_event; 4-byte aligned */
        .set    REQ_HEADER, 0x22000     /* struct virtio_blk_outhdr: type, ioprio, sector */
        .set    REQ_STATUS, 0x22100     /* one status byte written by the device */
        .set    WRITE_BUF,  0x23000
        .set    READ_BUF,   0x24000
        .set    SCRATCH_END, 0x25000

        .set    TEST_SECTOR, 2048       /* byte offset 1 MiB */

/* virtio_pci_common_cfg register offsets (virtio 1.x, 4.1.4.3) */
        .set    COMMON_DFSELECT, 0x00
        .set    COMMON_DF, 0x04
        .set    COMMON_GFSELECT, 0x08
        .set    COMMON_GF, 0x0C
        .set    COMMON_NUM_QUEUES, 0x12
        .set    COMMON_STATUS, 0x14
        .set    COMMON_Q_SELECT, 0x16
        .set    COMMON_Q_SIZE, 0x18
        .set    COMMON_Q_ENABLE, 0x1C
        .set    COMMON_Q_NOFF, 0x1E
        .set    COMMON_Q_DESCLO, 0x20
        .set    COMMON_Q_DESCHI, 0x24
        .set    COMMON_Q_AVAILLO, 0x28
        .set    COMMON_Q_AVAILHI, 0x2C
        .set    COMMON_Q_USEDLO, 0x30
        .set    COMMON_Q_USEDHI, 0x34
        .set    COMMON_CFG_MIN_LEN, 0x38

/* device status bits */
        .set    S_ACKNOWLEDGE, 1
        .set    S_DRIVER, 2
        .set    S_DRIVER_OK, 4
        .set    S_FEATURES_OK, 8

/* feature bits */
        .set    F_BLK_FLUSH, 1 << 9     /* in the low 32 bits */
        .set    F_VERSION_1_HI, 1 << 0  /* bit 32, in the high 32 bits */

/* request types */
        .set    T_IN, 0
        .set    T_OUT, 1
        .set    T_FLUSH, 4

/* descriptor flags */
        .set    D_NEXT, 1
        .set    D_WRITE, 2

main:
        mov     $msg_banner, %si
        call    puts_both

        /* Fast A20 (port 0x92 bit 1) so that addresses with bit 20 set, such
         * as BARs near 4 GiB, are not aliased. Bit 0 would reset the CPU. */
        in      $0x92, %al
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

        call    find_device
        call    find_capabilities

        mov     $msg_found, %esi
        call    puts32
        mov     pci_address, %eax
        call    print_hex32
        mov     $msg_common, %esi
        call    puts32
        mov     common_cfg, %eax
        call    print_hex32
        mov     $msg_crlf, %esi
        call    puts32

        call    clear_scratch
        call    init_device
        call    fill_write_buffer

        /* WRITE (OUT) sector 2048 from WRITE_BUF. */
        mov     $T_OUT, %eax
        mov     $TEST_SECTOR, %ebx
        mov     $WRITE_BUF, %edx
        xor     %ecx, %ecx              /* data descriptor: device reads it */
        mov     $step_write, %esi
        call    do_request

        /* FLUSH: header + status only; sector must be 0. */
        mov     $T_FLUSH, %eax
        xor     %ebx, %ebx
        xor     %edx, %edx
        mov     $step_flush, %esi
        call    do_request

        /* READ (IN) sector 2048 into READ_BUF (zeroed by clear_scratch). */
        mov     $T_IN, %eax
        mov     $TEST_SECTOR, %ebx
        mov     $READ_BUF, %edx
        mov     $D_WRITE, %ecx          /* data descriptor: device writes it */
        mov     $step_read, %esi
        call    do_request

        mov     $WRITE_BUF, %esi
        mov     $READ_BUF, %edi
        mov     $512, %ecx
1:      mov     (%esi), %al
        cmp     (%edi), %al
        jne     compare_failed
        inc     %esi
        inc     %edi
        loop    1b

        mov     $msg_ok, %esi
        call    puts32
        jmp     power_off32

compare_failed:
        mov     %edi, %eax
        sub     $READ_BUF, %eax         /* report the first differing offset */
        mov     $step_compare, %esi
        jmp     fail_value

/* ---------------------------------------------------------------------------
 * PCI
 */

/* Read the dword at config offset ECX (dword aligned) of the function whose
 * mechanism #1 address (0x80000000 | bus << 16 | dev << 11 | fn << 8) is in
 * EBX. Returns EAX. */
pci_read32:
        push    %edx
        mov     %ecx, %eax
        and     $0xFC, %eax
        or      %ebx, %eax
        mov     $0xCF8, %dx
        out     %eax, %dx
        mov     $0xCFC, %dx
        in      %dx, %eax
        pop     %edx
        ret

/* Read the byte at config offset ECX into EAX (zero-extended). */
pci_read8:
        push    %ecx
        call    pci_read32
        and     $3, %ecx
        shl     $3, %ecx
        shr     %cl, %eax
        and     $0xFF, %eax
        pop     %ecx
        ret

/* Scan every bus/device/function for a virtio-blk that speaks virtio 1.x.
 * A missing function 0 means an empty slot, so the other functions are
 * skipped (the same shortcut Linux's scan makes). */
find_device:
        mov     $0x80000000, %ebx
1:      xor     %ecx, %ecx
        call    pci_read32
        cmp     $0x10421AF4, %eax       /* modern-only virtio-blk */
        je      2f
        cmp     $0x10011AF4, %eax       /* transitional virtio-blk; modern caps checked later */
        je      2f
        cmp     $0xFFFF, %ax
        jne     3f
        test    $0x700, %ebx            /* function 0 absent: skip the slot */
        jnz     3f
        add     $0x700, %ebx
3:      add     $0x100, %ebx
        cmp     $0x81000000, %ebx       /* past bus 255 */
        jb      1b
        mov     $step_pci_scan, %esi
        jmp     fail

2:      mov     %ebx, pci_address
        /* Memory space decoding and bus mastering on, as pci_enable_device()
         * and pci_set_master() do; the DMA below needs the latter. A 16-bit
         * write so the status register's write-1-to-clear bits are left
         * alone. */
        mov     $0x04, %ecx
        call    pci_read32
        or      $0x06, %ax
        push    %eax
        mov     %ebx, %eax
        or      $0x04, %eax
        mov     $0xCF8, %dx
        out     %eax, %dx
        pop     %eax
        mov     $0xCFC, %dx
        out     %ax, %dx
        ret

/* Walk the capability list and record the first capability of each virtio
 * type, as virtio_pci_find_capability() does. */
find_capabilities:
        mov     pci_address, %ebx
        mov     $0x04, %ecx
        call    pci_read32
        test    $(1 << 20), %eax        /* status bit 4: capability list present */
        jz      no_caps
        mov     $0x34, %ecx
        call    pci_read8
        mov     $48, %edi               /* bound the walk: a looping list must not hang us */
cap_loop:
        and     $0xFC, %eax
        jz      caps_done
        mov     %eax, %ecx
        call    pci_read32              /* id, next, cap_len, cfg_type */
        cmp     $0x09, %al              /* vendor-specific: a virtio_pci_cap */
        jne     cap_next
        push    %eax
        shr     $24, %eax               /* cfg_type */
        cmp     $1, %eax
        je      cap_common
        cmp     $2, %eax
        je      cap_notify
        cmp     $3, %eax
        je      cap_isr
        cmp     $4, %eax
        je      cap_device
        jmp     cap_popped              /* PCI cfg access (5) and others: unused */

cap_common:
        cmpl    $0, common_cfg
        jne     cap_popped
        call    cap_address
        mov     %eax, common_cfg
        add     $12, %ecx               /* length must cover the whole structure */
        call    pci_read32
        sub     $12, %ecx
        cmp     $COMMON_CFG_MIN_LEN, %eax
        jb      short_common_cap
        jmp     cap_popped
cap_notify:
        cmpl    $0, notify_base
        jne     cap_popped
        call    cap_address
        mov     %eax, notify_base
        add     $16, %ecx               /* notify_off_multiplier */
        call    pci_read32
        sub     $16, %ecx
        mov     %eax, notify_multiplier
        jmp     cap_popped
cap_isr:
        cmpl    $0, isr_cfg
        jne     cap_popped
        call    cap_address
        mov     %eax, isr_cfg
        jmp     cap_popped
cap_device:
        cmpl    $0, device_cfg
        jne     cap_popped
        call    cap_address
        mov     %eax, device_cfg

cap_popped:
        pop     %eax
cap_next:
        shr     $8, %eax                /* next pointer */
        and     $0xFF, %eax
        dec     %edi
        jnz     cap_loop

caps_done:
        mov     $step_common_cap, %esi
        cmpl    $0, common_cfg
        je      fail
        mov     $step_notify_cap, %esi
        cmpl    $0, notify_base
        je      fail
        mov     $step_isr_cap, %esi
        cmpl    $0, isr_cfg
        je      fail
        mov     $step_device_cap, %esi
        cmpl    $0, device_cfg
        je      fail
        ret

no_caps:
        mov     $step_no_caps, %esi
        jmp     fail
short_common_cap:
        mov     $step_common_cap_len, %esi
        jmp     fail_value

/* For the virtio_pci_cap at config offset ECX: EAX = address of the
 * structure, i.e. BAR[bar] + offset. Only 32-bit-reachable memory BARs are
 * supported; anything else is reported, not silently misused. */
cap_address:
        push    %ecx
        push    %edx
        add     $4, %ecx
        call    pci_read8               /* bar */
        cmp     $5, %eax
        ja      bad_bar_index
        lea     0x10(,%eax,4), %edx     /* config offset of BAR[bar] */
        add     $4, %ecx
        call    pci_read32              /* offset within the BAR */
        push    %eax
        mov     %edx, %ecx
        call    pci_read32              /* the BAR itself */
        test    $1, %al
        jnz     io_bar
        mov     %eax, %edx
        and     $0x6, %edx
        cmp     $0x4, %edx              /* type 10b: 64-bit BAR, high half follows */
        jne     1f
        push    %eax
        add     $4, %ecx
        call    pci_read32
        test    %eax, %eax
        jnz     bar_above_4g
        pop     %eax
1:      and     $0xFFFFFFF0, %eax
        jz      bar_unassigned
        pop     %edx
        add     %edx, %eax
        pop     %edx
        pop     %ecx
        ret

bad_bar_index:
        mov     $step_bar_index, %esi
        jmp     fail_value
io_bar:
        mov     $step_io_bar, %esi
        jmp     fail_value
bar_above_4g:
        mov     $step_bar_above_4g, %esi
        jmp     fail_value
bar_unassigned:
        mov     $step_bar_unassigned, %esi
        jmp     fail

/* ---------------------------------------------------------------------------
 * Device initialisation (virtio 1.x section 3.1.1, in the order of
 * virtio_dev_probe() / vp_modern_*).
 */
init_device:
        mov     common_cfg, %ebp

        /* Reset, and wait for the device to acknowledge it by reading back 0
         * (vp_reset does the same). */
        movb    $0, COMMON_STATUS(%ebp)
        mov     $5, %ecx
        call    timeout_start
1:      movb    COMMON_STATUS(%ebp), %al
        test    %al, %al
        jz      2f
        call    timeout_check
        jnc     1b
        mov     $step_reset, %esi
        jmp     fail_value

2:      movb    $S_ACKNOWLEDGE, COMMON_STATUS(%ebp)
        movb    $(S_ACKNOWLEDGE | S_DRIVER), COMMON_STATUS(%ebp)

        /* Device features: 32 bits at a time through the select register. */
        movl    $0, COMMON_DFSELECT(%ebp)
        mov     COMMON_DF(%ebp), %ebx
        movl    $1, COMMON_DFSELECT(%ebp)
        mov     COMMON_DF(%ebp), %eax
        test    $F_VERSION_1_HI, %eax
        jz      no_version_1
        test    $F_BLK_FLUSH, %ebx
        jz      no_flush

        /* Accept exactly VERSION_1 and FLUSH. */
        movl    $0, COMMON_GFSELECT(%ebp)
        movl    $F_BLK_FLUSH, COMMON_GF(%ebp)
        movl    $1, COMMON_GFSELECT(%ebp)
        movl    $F_VERSION_1_HI, COMMON_GF(%ebp)

        movb    $(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK), COMMON_STATUS(%ebp)
        movb    COMMON_STATUS(%ebp), %al
        test    $S_FEATURES_OK, %al
        jz      features_rejected

        /* The disk must reach past the test sector: capacity (le64, in
         * 512-byte sectors) is the first field of virtio_blk_config. */
        mov     device_cfg, %esi
        mov     4(%esi), %eax
        test    %eax, %eax
        jnz     3f
        mov     (%esi), %eax
        cmp     $TEST_SECTOR, %eax
        jbe     too_small

3:      movzwl  COMMON_NUM_QUEUES(%ebp), %eax
        test    %eax, %eax
        jz      no_queues

        /* Queue 0: must exist (size != 0) and not already be live; we use
         * fewer entries than the maximum, which the driver may choose. */
        movw    $0, COMMON_Q_SELECT(%ebp)
        movzwl  COMMON_Q_SIZE(%ebp), %eax
        cmp     $QUEUE_SIZE, %eax
        jb      bad_queue_size
        movzwl  COMMON_Q_ENABLE(%ebp), %eax
        test    %eax, %eax
        jnz     queue_already_enabled
        movw    $QUEUE_SIZE, COMMON_Q_SIZE(%ebp)
        movl    $DESC_TABLE, COMMON_Q_DESCLO(%ebp)
        movl    $0, COMMON_Q_DESCHI(%ebp)
        movl    $AVAIL_RING, COMMON_Q_AVAILLO(%ebp)
        movl    $0, COMMON_Q_AVAILHI(%ebp)
        movl    $USED_RING, COMMON_Q_USEDLO(%ebp)
        movl    $0, COMMON_Q_USEDHI(%ebp)

        /* This queue's doorbell: notify base + queue_notify_off *
         * notify_off_multiplier. */
        movzwl  COMMON_Q_NOFF(%ebp), %eax
        mull    notify_multiplier
        add     notify_base, %eax
        mov     %eax, queue_notify

        movw    $1, COMMON_Q_ENABLE(%ebp)

        movb    $(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK), COMMON_STATUS(%ebp)
        ret

no_version_1:
        mov     $step_version_1, %esi
        jmp     fail_value
no_flush:
        mov     %ebx, %eax
        mov     $step_flush_feature, %esi
        jmp     fail_value
features_rejected:
        movzbl  %al, %eax
        mov     $step_features_ok, %esi
        jmp     fail_value
too_small:
        mov     $step_capacity, %esi
        jmp     fail_value
no_queues:
        mov     $step_num_queues, %esi
        jmp     fail
bad_queue_size:
        mov     $step_queue_size, %esi
        jmp     fail_value
queue_already_enabled:
        mov     $step_queue_enabled, %esi
        jmp     fail

/* ---------------------------------------------------------------------------
 * Requests
 *
 * do_request: EAX = type, EBX = sector, EDX = data buffer (0: no data
 * descriptor), ECX = data descriptor flags (0 or D_WRITE), ESI = step name
 * for failures. The request is a descriptor chain header -> [data ->] status,
 * always starting at descriptor 0 since only one request is in flight.
 */
do_request:
        mov     %esi, current_step
        movl    %eax, REQ_HEADER        /* type */
        movl    $0, REQ_HEADER + 4      /* ioprio */
        movl    %ebx, REQ_HEADER + 8    /* sector, le64 */
        movl    $0, REQ_HEADER + 12
        movb    $0xFF, REQ_STATUS       /* no status yet: the device must write it */

        mov     $DESC_TABLE, %edi
        movl    $REQ_HEADER, 0(%edi)    /* addr */
        movl    $0, 4(%edi)
        movl    $16, 8(%edi)            /* len */
        movw    $D_NEXT, 12(%edi)       /* flags: device-readable, chained */
        movw    $1, 14(%edi)            /* next */
        add     $16, %edi

        test    %edx, %edx
        jz      1f
        movl    %edx, 0(%edi)
        movl    $0, 4(%edi)
        movl    $512, 8(%edi)
        or      $D_NEXT, %ecx
        movw    %cx, 12(%edi)
        movw    $2, 14(%edi)
        add     $16, %edi

1:      movl    $REQ_STATUS, 0(%edi)
        movl    $0, 4(%edi)
        movl    $1, 8(%edi)
        movw    $D_WRITE, 12(%edi)
        movw    $0, 14(%edi)

        /* Publish head descriptor 0 in the avail ring, then the new index.
         * x86 keeps stores in program order, so the device cannot see the
         * index before the ring entry and descriptors (Linux's virtio_wmb is
         * only a compiler barrier on x86 for the same reason). */
        movzwl  avail_idx, %eax
        mov     %eax, %ecx
        and     $(QUEUE_SIZE - 1), %ecx
        movw    $0, AVAIL_RING + 4(,%ecx,2)
        inc     %eax
        mov     %ax, avail_idx
        movw    %ax, AVAIL_RING + 2

        /* Kick: write the queue index to its doorbell. We always notify
         * rather than honour VRING_USED_F_NO_NOTIFY, which is allowed, and
         * avoids needing a full memory barrier between the index store and
         * reading the used flags. */
        mov     queue_notify, %edi
        movw    $0, (%edi)

        /* Poll the used index (we asked for no interrupts in avail.flags). */
        mov     $5, %ecx
        call    timeout_start
2:      movzwl  USED_RING + 2, %eax
        cmp     avail_idx, %ax
        je      3f
        call    timeout_check
        jnc     2b
        mov     $step_timeout, %esi
        jmp     fail_request

3:      /* Reading the ISR acknowledges (de-asserts) the INTx line the
         * device raised for this completion, as vp_interrupt() does. */
        mov     isr_cfg, %edi
        movb    (%edi), %al

        /* The used element must name our head descriptor. */
        movzwl  avail_idx, %eax
        dec     %eax
        and     $(QUEUE_SIZE - 1), %eax
        mov     USED_RING + 4(,%eax,8), %eax
        test    %eax, %eax
        jnz     bad_used_id

        movzbl  REQ_STATUS, %eax
        test    %eax, %eax              /* VIRTIO_BLK_S_OK */
        jnz     bad_status
        ret

bad_used_id:
        mov     $step_used_id, %esi
        jmp     fail_request
bad_status:
        mov     $step_status, %esi
        jmp     fail_request

/* "SPICEBOX-VIRTIO-FAIL <request> <what> <value>" */
fail_request:
        push    %esi
        push    %eax
        mov     $msg_fail, %esi
        call    puts32
        mov     current_step, %esi
        call    puts32
        mov     $' ', %al
        call    serial_putc32
        pop     %eax
        pop     %esi
        jmp     fail_value_tail

/* ---------------------------------------------------------------------------
 * Helpers
 */

/* Zero the rings and buffers: low RAM may hold anything, and a ring must
 * start with idx 0 and flags clear. */
clear_scratch:
        mov     $DESC_TABLE, %edi
1:      movl    $0, (%edi)
        add     $4, %edi
        cmp     $SCRATCH_END, %edi
        jb      1b
        movw    $1, AVAIL_RING          /* VRING_AVAIL_F_NO_INTERRUPT: we poll */
        ret

/* WRITE_BUF = "SPICEBOX-VIRTIO-WRITE" followed by bytes (offset & 0xFF). */
fill_write_buffer:
        xor     %ecx, %ecx
1:      mov     %cl, WRITE_BUF(%ecx)
        inc     %ecx
        cmp     $512, %ecx
        jb      1b
        mov     $write_pattern_prefix, %esi
        mov     $WRITE_BUF, %edi
2:      mov     (%esi), %al
        test    %al, %al
        jz      3f
        mov     %al, (%edi)
        inc     %esi
        inc     %edi
        jmp     2b
3:      ret

/* A timeout of ECX RTC second ticks: timeout_start records the current
 * second, timeout_check returns CF=1 once it has changed ECX times. */
timeout_start:
        mov     %ecx, timeout_left
        call    rtc_seconds32
        mov     %al, timeout_last
        ret
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

/* fail: "SPICEBOX-VIRTIO-FAIL <step>"; fail_value adds " <EAX in hex>". */
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
fail_value_tail:
        push    %eax
        call    puts32
        mov     $' ', %al
        call    serial_putc32
        pop     %eax
        call    print_hex32
        mov     $msg_crlf, %esi
        call    puts32
        /* fall through */

/* Same as the real-mode power_off, for protected mode. */
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
pci_address:            .long 0
common_cfg:             .long 0
notify_base:            .long 0
notify_multiplier:      .long 0
isr_cfg:                .long 0
device_cfg:             .long 0
queue_notify:           .long 0
current_step:           .long 0
timeout_left:           .long 0
avail_idx:              .word 0
timeout_last:           .byte 0

msg_banner:             .asciz "spicebox virtio-blk test\r\n"
msg_found:              .asciz "virtio-blk pci "
msg_common:             .asciz " common "
msg_crlf:               .asciz "\r\n"
msg_ok:                 .asciz "SPICEBOX-VIRTIO-OK\r\n"
msg_fail:               .asciz "SPICEBOX-VIRTIO-FAIL "
write_pattern_prefix:   .asciz "SPICEBOX-VIRTIO-WRITE"

step_pci_scan:          .asciz "pci-scan"
step_no_caps:           .asciz "no-capabilities"
step_common_cap:        .asciz "common-cap"
step_common_cap_len:    .asciz "common-cap-length"
step_notify_cap:        .asciz "notify-cap"
step_isr_cap:           .asciz "isr-cap"
step_device_cap:        .asciz "device-cap"
step_bar_index:         .asciz "bar-index"
step_io_bar:            .asciz "io-bar"
step_bar_above_4g:      .asciz "bar-above-4g"
step_bar_unassigned:    .asciz "bar-unassigned"
step_reset:             .asciz "reset"
step_version_1:         .asciz "version-1"
step_flush_feature:     .asciz "flush-feature"
step_features_ok:       .asciz "features-ok"
step_capacity:          .asciz "capacity"
step_num_queues:        .asciz "num-queues"
step_queue_size:        .asciz "queue-size"
step_queue_enabled:     .asciz "queue-already-enabled"
step_write:             .asciz "write"
step_flush:             .asciz "flush"
step_read:              .asciz "read"
step_timeout:           .asciz "timeout"
step_used_id:           .asciz "used-id"
step_status:            .asciz "status"
step_compare:           .asciz "compare"

image_end:
        .section .note.GNU-stack, "", @progbits
