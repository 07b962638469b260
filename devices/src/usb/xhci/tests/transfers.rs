//! Enumeration, transfers, endpoint errors, event ring and slots.

use super::*;

#[test]
fn capabilities_halt_reset_run() {
    let mut d = Driver::new();
    assert_eq!(d.r32(0) & 0xff, 0x40);
    assert_eq!(d.r32(0) >> 16, 0x0100);
    let mut b = [0u8; 1];
    d.hc.read(0, &mut b);
    assert_eq!(b[0], 0x40);
    assert_eq!(d.r32(4), 8 << 24 | 16 << 8 | 64);
    assert_eq!(d.r32(0x14), 0x2000);
    assert_eq!(d.r32(0x18), 0x1000);
    // Extended capabilities: USB 2 ports 1-4, then USB 3 ports 5-8.
    let xecp = u64::from(d.r32(0x10) >> 16) * 4;
    assert_eq!(d.r32(xecp) & 0xff, 2);
    assert_eq!(d.r32(xecp) >> 24, 2);
    assert_eq!(d.r32(xecp + 8), 4 << 8 | 1);
    let next = xecp + u64::from((d.r32(xecp) >> 8) & 0xff) * 4;
    assert_eq!(d.r32(next) >> 24, 3);
    assert_eq!(d.r32(next + 8), 4 << 8 | 5);
    assert_eq!((d.r32(next) >> 8) & 0xff, 0, "last capability");
    assert_eq!(d.r32(OP_BASE + 4) & USBSTS_HCH, USBSTS_HCH);
    d.start();
    // Halt, then a reset brings the power-on state back.
    d.w32(OP_BASE, 0);
    assert_eq!(d.r32(OP_BASE + 4) & USBSTS_HCH, USBSTS_HCH);
    d.w32(OP_BASE + 0x38, 5);
    d.w32(OP_BASE, USBCMD_HCRST);
    assert_eq!(d.r32(OP_BASE + 0x38), 0);
    assert_eq!(d.r32(OP_BASE), 0);
}

#[test]
fn enumerate_configure_and_bulk_transfers() {
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    assert_eq!(port, 1);
    let slot = d.address(port);
    // GET_DESCRIPTOR(device, 8), then the whole 18 bytes: one event each, on
    // the Status stage.
    let evs = d.get_descriptor(slot, 8);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].trb_type(), code(&evs[0]), evs[0].slot_id()),
        (tt::TRANSFER_EVENT, cc::SUCCESS, slot)
    );
    assert_eq!((evs[0].control >> 16) & 0x1f, 1);
    let mut got = [0u8; 18];
    d.mem.read_slice(&mut got[..8], GuestAddress(BUF)).unwrap();
    assert_eq!(got[..8], DEVICE_DESCRIPTOR[..8]);
    // Asking 64 bytes gets 18: a short packet on the Data stage, then the Status.
    let evs = d.get_descriptor(slot, 64);
    assert_eq!(evs.len(), 2);
    assert_eq!(
        (code(&evs[0]), evs[0].status & 0xffffff),
        (cc::SHORT_PACKET, 64 - 18)
    );
    assert_eq!(code(&evs[1]), cc::SUCCESS);
    d.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, DEVICE_DESCRIPTOR);
    {
        let log = d.log.lock().unwrap();
        let TransferKind::Control(s) = log.requests[1].kind else {
            panic!()
        };
        assert_eq!(
            s,
            SetupPacket {
                request_type: 0x80,
                request: 6,
                value: 0x100,
                index: 0,
                length: 64
            }
        );
        assert_eq!(
            (log.requests[1].endpoint, log.requests[1].length),
            (0x80, 64)
        );
    }
    // Evaluate Context: EP0 max packet size 64 → 512 lands in the output context.
    d.set_ctx(IN_CTX, [0, 2, 0, 0, 0, 0, 0, 0]);
    let mut ep0 = d.ctx(IN_CTX + 64);
    ep0[1] = (ep0[1] & 0xffff) | 512 << 16;
    d.set_ctx(IN_CTX + 64, ep0);
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::EVALUATE_CONTEXT << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    assert_eq!(d.ctx(OUT_CTX + 32)[1] >> 16, 512);

    d.configure(slot);
    // Bulk OUT: a chain of two TRBs, IDT data in the first, IOC on the last.
    d.mem
        .write_slice(b"WXYZ", GuestAddress(BUF + 0x100))
        .unwrap();
    d.queue(
        BULK_OUT_RING,
        &[
            Trb {
                parameter: u64::from_le_bytes(*b"abcd\0\0\0\0"),
                status: 4,
                control: tt::NORMAL << 10 | IDT | CHAIN,
            },
            Trb {
                parameter: BUF + 0x100,
                status: 4,
                control: tt::NORMAL << 10 | IOC,
            },
        ],
    );
    d.ring_doorbell(slot, 4);
    let evs = d.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (code(&evs[0]), (evs[0].control >> 16) & 0x1f),
        (cc::SUCCESS, 4)
    );
    assert_eq!(
        d.log.lock().unwrap().requests.last().unwrap().data,
        b"abcdWXYZ"
    );
    // Bulk IN over two TRBs, the device sends less: short on the second TRB.
    d.log
        .lock()
        .unwrap()
        .bulk_in
        .push_back((0..600u32).map(|i| i as u8).collect());
    let addrs = d.queue(
        BULK_IN_RING,
        &[
            Trb {
                parameter: BUF + 0x1000,
                status: 512,
                control: tt::NORMAL << 10 | CHAIN | 1 << 2,
            },
            Trb {
                parameter: BUF + 0x1200,
                status: 512,
                control: tt::NORMAL << 10 | IOC | 1 << 2,
            },
        ],
    );
    d.ring_doorbell(slot, 3);
    let evs = d.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].parameter, code(&evs[0]), evs[0].status & 0xffffff),
        (addrs[1], cc::SHORT_PACKET, 1024 - 600)
    );
    let mut data = vec![0u8; 600];
    d.mem
        .read_slice(&mut data, GuestAddress(BUF + 0x1000))
        .unwrap();
    assert_eq!(data, (0..600u32).map(|i| i as u8).collect::<Vec<_>>());
    // The output context tracks the ring.
    let (deq, _) = ep_dequeue(&d.ctx(OUT_CTX + 32 * 3));
    assert_eq!(deq, BULK_IN_RING);
}

#[test]
fn stall_halts_then_reset_endpoint_and_set_dequeue() {
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    let slot = d.address(port);
    d.configure(slot);
    d.log.lock().unwrap().stall_next = true;
    let addrs = d.queue(
        BULK_IN_RING,
        &[Trb {
            parameter: BUF,
            status: 512,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 3);
    let evs = d.events();
    assert_eq!(
        (evs.len(), code(&evs[0]), evs[0].parameter),
        (1, cc::STALL, addrs[0])
    );
    assert_eq!(d.ctx(OUT_CTX + 32 * 3)[0] & 7, u32::from(EP_HALTED));
    // A doorbell on a halted endpoint does nothing.
    d.queue(
        BULK_IN_RING,
        &[Trb {
            parameter: BUF,
            status: 512,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 3);
    assert!(d.events().is_empty());
    // Stop on a halted endpoint is a context state error; Reset Endpoint works.
    let ev = d.command(Trb {
        control: tt::STOP_ENDPOINT << 10 | 3 << 16 | u32::from(slot) << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::CONTEXT_STATE);
    let ev = d.command(Trb {
        control: tt::RESET_ENDPOINT << 10 | 3 << 16 | u32::from(slot) << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    assert_eq!(d.ctx(OUT_CTX + 32 * 3)[0] & 7, u32::from(EP_STOPPED));
    // Set TR Dequeue past the queued TD; the doorbell then finds the ring empty.
    let ev = d.command(Trb {
        parameter: (BULK_IN_RING + 32) | 1,
        status: 0,
        control: tt::SET_TR_DEQUEUE << 10 | 3 << 16 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    assert_eq!(
        ep_dequeue(&d.ctx(OUT_CTX + 32 * 3)),
        (BULK_IN_RING + 32, true)
    );
    d.ring_doorbell(slot, 3);
    assert!(d.events().is_empty());
    assert_eq!(d.ctx(OUT_CTX + 32 * 3)[0] & 7, u32::from(EP_RUNNING));
}

#[test]
fn interrupt_transfers_complete_later_and_stop_cancels() {
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    let slot = d.address(port);
    d.configure(slot);
    let addrs = d.queue(
        INT_RING,
        &[Trb {
            parameter: BUF,
            status: 8,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 7);
    assert!(d.events().is_empty(), "waits for the device");
    let id = d.log.lock().unwrap().pending[0];
    d.log.lock().unwrap().completions.push(UsbCompletion {
        id,
        status: UsbStatus::Success,
        data: vec![0, 0, 4, 0, 0, 0, 0, 0],
        actual: 0,
    });
    d.hc.process();
    let evs = d.events();
    assert_eq!(
        (evs.len(), code(&evs[0]), evs[0].parameter),
        (1, cc::SUCCESS, addrs[0])
    );
    let mut report = [0u8; 8];
    d.mem.read_slice(&mut report, GuestAddress(BUF)).unwrap();
    assert_eq!(report[2], 4);
    // Another poll; the driver unlinks it: Stop Endpoint cancels the transfer and
    // the context's dequeue points at the unfinished TD.
    let addrs = d.queue(
        INT_RING,
        &[Trb {
            parameter: BUF,
            status: 8,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 7);
    let id = *d.log.lock().unwrap().pending.last().unwrap();
    let ev = d.command(Trb {
        control: tt::STOP_ENDPOINT << 10 | 7 << 16 | u32::from(slot) << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    assert_eq!(d.log.lock().unwrap().cancelled, vec![id]);
    assert_eq!(ep_dequeue(&d.ctx(OUT_CTX + 32 * 7)), (addrs[0], true));
    // A late completion for the cancelled transfer is dropped.
    d.log.lock().unwrap().completions.push(UsbCompletion {
        id,
        status: UsbStatus::Success,
        data: vec![1; 8],
        actual: 0,
    });
    d.hc.process();
    assert!(d.events().is_empty());
}

#[test]
fn event_ring_wraps_and_interrupts() {
    let mut d = Driver::new();
    d.start();
    // INTx while MSI-X is off: IP with IE and INTE raise the line; the driver
    // clears IP (write 1) and the line drops.
    let ev = d.command(Trb {
        control: tt::NOOP_COMMAND << 10,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    assert!(*d.irq.intx.lock().unwrap());
    d.w32(RUNTIME_BASE + 0x20, 0x3);
    assert!(!*d.irq.intx.lock().unwrap());
    // Three laps of the 16-entry event ring and of the 64-entry command ring.
    *d.irq.messages.lock().unwrap() = true;
    for _ in 0..150 {
        let ev = d.command(Trb {
            control: tt::NOOP_COMMAND << 10,
            ..Trb::default()
        });
        assert_eq!(code(&ev), cc::SUCCESS);
    }
    // With MSI-X each event that finds the handler idle sends vector 0.
    assert_eq!(d.irq.msix.lock().unwrap().len(), 150);
    assert!(d.irq.msix.lock().unwrap().iter().all(|&v| v == 0));
}

#[test]
fn slots_run_out_and_disable_frees() {
    let mut d = Driver::new();
    d.start();
    for i in 1..=MAX_SLOTS as u8 {
        let ev = d.command(Trb {
            control: tt::ENABLE_SLOT << 10,
            ..Trb::default()
        });
        assert_eq!((code(&ev), ev.slot_id()), (cc::SUCCESS, i));
    }
    let ev = d.command(Trb {
        control: tt::ENABLE_SLOT << 10,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::NO_SLOTS);
    let ev = d.command(Trb {
        control: tt::DISABLE_SLOT << 10 | 7 << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    let ev = d.command(Trb {
        control: tt::ENABLE_SLOT << 10,
        ..Trb::default()
    });
    assert_eq!(ev.slot_id(), 7);
    // Commands on slots never enabled, or out of range.
    let ev = d.command(Trb {
        control: tt::DISABLE_SLOT << 10 | 200 << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SLOT_NOT_ENABLED);
}

#[test]
fn transfer_events_go_to_the_trbs_interrupter_target() {
    // A second event ring for interrupter 1 (as a driver's secondary
    // interrupter), and a bulk OUT TD whose TRB names it.
    const ERST1: u64 = 0x3100;
    const EVENTS1: u64 = 0x5000;
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    let slot = d.address(port);
    d.configure(slot);
    d.mem.write_obj(EVENTS1, GuestAddress(ERST1)).unwrap();
    d.mem
        .write_obj(EVENT_TRBS, GuestAddress(ERST1 + 8))
        .unwrap();
    let intr1 = RUNTIME_BASE + 0x20 + 32;
    d.w32(intr1 + 0x08, 1);
    d.w64(intr1 + 0x10, ERST1);
    d.w64(intr1 + 0x18, EVENTS1);
    d.w32(intr1, 0x2); // IMAN.IE
    *d.irq.messages.lock().unwrap() = true;
    let addrs = d.queue(
        BULK_OUT_RING,
        &[Trb {
            parameter: BUF,
            status: 1 << 22 | 64,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 4);
    assert!(d.events().is_empty(), "nothing on interrupter 0");
    let ev = read_trb(&d.mem, EVENTS1);
    assert!(ev.cycle());
    assert_eq!(
        (ev.trb_type(), code(&ev), ev.parameter),
        (tt::TRANSFER_EVENT, cc::SUCCESS, addrs[0])
    );
    assert_eq!(*d.irq.msix.lock().unwrap(), [1], "vector 1 fired");
    // Target 0 (the field clear) still means the primary ring.
    let addrs = d.queue(
        BULK_OUT_RING,
        &[Trb {
            parameter: BUF,
            status: 64,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 4);
    let evs = d.events();
    assert_eq!((evs.len(), evs[0].parameter), (1, addrs[0]));
}

#[test]
fn bei_on_a_normal_trb_posts_its_event_without_an_interrupt() {
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    let slot = d.address(port);
    d.configure(slot);
    *d.irq.messages.lock().unwrap() = true;
    d.irq.msix.lock().unwrap().clear();
    let addrs = d.queue(
        BULK_OUT_RING,
        &[Trb {
            parameter: BUF,
            status: 64,
            control: tt::NORMAL << 10 | IOC | BEI,
        }],
    );
    d.ring_doorbell(slot, 4);
    let evs = d.events();
    assert_eq!(
        (evs.len(), code(&evs[0]), evs[0].parameter),
        (1, cc::SUCCESS, addrs[0])
    );
    assert!(d.irq.msix.lock().unwrap().is_empty(), "BEI: no interrupt");
    // Without BEI the next completion interrupts.
    d.queue(
        BULK_OUT_RING,
        &[Trb {
            parameter: BUF,
            status: 64,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 4);
    assert_eq!(d.events().len(), 1);
    assert_eq!(*d.irq.msix.lock().unwrap(), [0], "vector 0 fired");
}
