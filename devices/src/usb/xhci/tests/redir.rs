//! A redirected keyboard, end to end through usbredir.

use super::*;

/// Moves bytes between the controller's usbredir connection and a host peer
/// until both are quiet, running the controller's worker step in between.
fn pump(
    d: &mut Driver,
    conn: &crate::usb::redir::RedirConnection,
    peer: &mut usbredir::peer::HostPeer<usbredir::peer::Keyboard>,
) -> Vec<crate::usb::redir::RedirEvent> {
    let mut events = Vec::new();
    loop {
        d.hc.process();
        let to_peer = conn.take_output();
        let to_guest = peer.take_output();
        if to_peer.is_empty() && to_guest.is_empty() {
            return events;
        }
        peer.received(&to_peer).unwrap();
        for event in conn.received(&to_guest).unwrap() {
            match event {
                // As the SPICE transport does, on the thread that read them.
                crate::usb::redir::RedirEvent::Completed => d.hc.collect(),
                other => events.push(other),
            }
        }
    }
}

#[test]
fn redirected_keyboard_enumerates_and_reports_keys() {
    use crate::usb::redir::{RedirConnection, RedirEvent};
    use usbredir::peer::{HostPeer, Keyboard, KEYBOARD_DEVICE_DESCRIPTOR};

    let mut d = Driver::new();
    d.start();
    let conn = RedirConnection::new();
    conn.set_inline_completions(true);
    let mut peer = HostPeer::new(Keyboard::default());
    assert_eq!(
        pump(&mut d, &conn, &mut peer),
        vec![RedirEvent::Connected(UsbSpeed::Full)]
    );
    let port = d.connect_device(Box::new(conn.device().unwrap()));
    assert_eq!(
        (d.hc.portsc(port).unwrap() >> port::SPEED_SHIFT) & 0xf,
        UsbSpeed::Full as u32
    );
    let slot = d.address(port);
    // GET_DESCRIPTOR(device): answered by the peer, asynchronously.
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
                parameter: BUF,
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
    assert!(d.events().is_empty());
    pump(&mut d, &conn, &mut peer);
    let evs = d.events();
    assert_eq!((evs.len(), code(&evs[0])), (1, cc::SUCCESS));
    let mut desc = [0u8; 18];
    d.mem.read_slice(&mut desc, GuestAddress(BUF)).unwrap();
    assert_eq!(desc, KEYBOARD_DEVICE_DESCRIPTOR);
    // SET_CONFIGURATION(1): no data stage; travels as usbredir set_configuration.
    d.queue(
        EP0_RING,
        &[
            Trb {
                parameter: 9 << 8 | 1 << 16,
                status: 8,
                control: tt::SETUP << 10 | IDT,
            },
            Trb {
                parameter: 0,
                status: 0,
                control: tt::STATUS << 10 | 1 << 16 | IOC,
            },
        ],
    );
    d.ring_doorbell(slot, 1);
    pump(&mut d, &conn, &mut peer);
    assert_eq!(code(&d.events()[0]), cc::SUCCESS);
    // Configure the interrupt IN endpoint 0x81 (DCI 3) and poll it.
    d.set_ctx(IN_CTX, [0, 1 | 1 << 3, 0, 0, 0, 0, 0, 0]);
    d.set_ctx(IN_CTX + 32, [3 << 27 | 1 << 20, 0, 0, 0, 0, 0, 0, 0]);
    d.set_ctx(
        IN_CTX + 32 * 4,
        [
            10 << 16,
            3 << 1 | 7 << 3 | 8 << 16,
            INT_RING as u32 | 1,
            0,
            8,
            0,
            0,
            0,
        ],
    );
    d.rings.push((INT_RING, INT_RING));
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::CONFIGURE_ENDPOINT << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    let addrs = d.queue(
        INT_RING,
        &[Trb {
            parameter: BUF + 0x100,
            status: 8,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 3);
    pump(&mut d, &conn, &mut peer);
    assert!(d.events().is_empty(), "no key yet");
    // The user presses 'a' (usage 4) on the client's keyboard: the transport
    // reading the report completes the TD itself, no worker step.
    assert!(peer.report(0x81, &[0, 0, 4, 0, 0, 0, 0, 0]).unwrap());
    assert_eq!(
        conn.received(&peer.take_output()).unwrap(),
        vec![RedirEvent::Completed]
    );
    assert!(d.events().is_empty(), "not before the transport collects");
    d.hc.collect();
    let evs = d.events();
    assert_eq!(
        (evs.len(), code(&evs[0]), evs[0].parameter),
        (1, cc::SUCCESS, addrs[0])
    );
    let mut report = [0u8; 8];
    d.mem
        .read_slice(&mut report, GuestAddress(BUF + 0x100))
        .unwrap();
    assert_eq!(report, [0, 0, 4, 0, 0, 0, 0, 0]);
    // The client unplugs it: the connection says so and the port empties.
    peer.disconnect().unwrap();
    assert_eq!(
        pump(&mut d, &conn, &mut peer),
        vec![RedirEvent::Disconnected]
    );
    assert!(d.hc.detach(port).is_some());
    assert_eq!(d.hc.portsc(port).unwrap() & port::CCS, 0);
}
