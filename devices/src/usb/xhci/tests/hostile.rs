//! Hostile contexts, rings and buffers; detach under load.

use super::*;

#[test]
fn hostile_contexts_rings_and_buffers() {
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    let ev = d.command(Trb {
        control: tt::ENABLE_SLOT << 10,
        ..Trb::default()
    });
    let slot = ev.slot_id();
    // Address Device with the input context outside RAM, then with no DCBAA entry,
    // then naming a port with nothing on it.
    let ev = d.command(Trb {
        parameter: 0xfff_0000_0000,
        status: 0,
        control: tt::ADDRESS_DEVICE << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::TRB_ERROR);
    d.set_ctx(IN_CTX, [0, 3, 0, 0, 0, 0, 0, 0]);
    d.set_ctx(
        IN_CTX + 32,
        [1 << 27, u32::from(port) << 16, 0, 0, 0, 0, 0, 0],
    );
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::ADDRESS_DEVICE << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::TRB_ERROR);
    d.mem
        .write_obj(OUT_CTX, GuestAddress(DCBAA + 8 * u64::from(slot)))
        .unwrap();
    d.set_ctx(IN_CTX + 32, [1 << 27, 8 << 16, 0, 0, 0, 0, 0, 0]);
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::ADDRESS_DEVICE << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::TRB_ERROR);
    // Configure Endpoint before Address Device: context state.
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::CONFIGURE_ENDPOINT << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::CONTEXT_STATE);
    let slot = d.address(port);
    // An endpoint type that contradicts its DCI: parameter error, nothing changes.
    d.set_ctx(IN_CTX, [0, 1 << 3, 0, 0, 0, 0, 0, 0]);
    d.set_ctx(
        IN_CTX + 32 * 4,
        [0, 2 << 3, BULK_IN_RING as u32 | 1, 0, 0, 0, 0, 0],
    );
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::CONFIGURE_ENDPOINT << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::PARAMETER);
    // A control TD whose IN buffer is outside RAM: no panic, the event still comes.
    let setup = 0x80u64 | 6 << 8 | 0x0100 << 16 | 18 << 48;
    d.queue(
        EP0_RING,
        &[
            Trb {
                parameter: setup,
                status: 8,
                control: tt::SETUP << 10 | IDT | 3 << 16,
            },
            Trb {
                parameter: 0xffff_ffff_0000,
                status: 18,
                control: tt::DATA << 10 | 1 << 16,
            },
            Trb {
                parameter: 0,
                status: 0,
                control: tt::STATUS << 10 | IOC,
            },
        ],
    );
    d.ring_doorbell(slot, 1);
    assert_eq!(d.events().len(), 1);
    // A transfer ring that links to itself: the endpoint halts, the worker returns.
    d.queue(
        EP0_RING,
        &[Trb {
            parameter: 0,
            status: 0,
            control: tt::LINK << 10,
        }],
    );
    let at = d.rings[0].1 - 16;
    put(
        &d.mem,
        at,
        Trb {
            parameter: at,
            status: 0,
            control: tt::LINK << 10 | CYCLE,
        },
    );
    d.ring_doorbell(slot, 1);
    assert_eq!(d.ctx(OUT_CTX + 32)[0] & 7, u32::from(EP_HALTED));
    // A command ring pointing outside RAM stops; the controller keeps working.
    d.w32(OP_BASE + 0x18, 1 << 1); // stop the ring to reload CRCR
    assert_eq!(code(&d.event().unwrap()), cc::COMMAND_RING_STOPPED);
    d.w64(OP_BASE + 0x18, 0xffff_ffff_0000 | 1);
    d.w32(DOORBELL_BASE, 0);
    assert!(d.event().is_none());
    // Doorbells for slots out of range are ignored.
    d.w32(DOORBELL_BASE + 4 * 200, 1);
    d.w32(DOORBELL_BASE + 4 * 3, 40);
}

#[test]
fn detach_reports_disconnect_and_fails_transfers() {
    let mut d = Driver::new();
    d.start();
    let port = d.connect();
    let slot = d.address(port);
    assert!(d.hc.detach(port).is_some());
    let ev = d.event().unwrap();
    assert_eq!(ev.trb_type(), tt::PORT_STATUS_CHANGE);
    assert_eq!(
        d.hc.portsc(port).unwrap() & (port::CCS | port::CSC),
        port::CSC
    );
    let evs = d.get_descriptor(slot, 8);
    assert_eq!(code(&evs[0]), cc::USB_TRANSACTION_ERROR);
    // The port is free again for the next device.
    assert_eq!(d.hc.attach(Box::new(TestDevice(d.log.clone()))), Some(port));
}
