//! A boot keyboard driven as usbhid does with the boot protocol: Configure
//! Endpoint for the interrupt IN endpoint (its Interval as
//! `xhci_get_endpoint_interval` computes it), SET_CONFIGURATION, SET_IDLE
//! (0: report only on change), SET_PROTOCOL (boot), the report descriptor,
//! SET_REPORT with the LEDs (Num Lock on), then interrupt TDs kept queued
//! (`hid_submit_in`: one URB resubmitted as each completes; here several
//! so no report waits for a resubmission).
//!
//! Prints `hid ready` once TDs are queued, `hid tick <n>` each second without
//! an event, `hid port-change ...` for other ports' plugs and unplugs (their
//! change bits acknowledged), `hid report <8 bytes>` per report
//! and, after the release following Enter, `hid typed "<text>"` decoded from
//! the boot reports' usage ids.

use alloc::collections::VecDeque;
use alloc::string::String;
use core::fmt::Write;
use core::time::Duration;

use guest_rt::mem::Dma;
use guest_rt::{check, fail, println};

use crate::xhci::{
    descriptors, get_descriptor, Device, EndpointConfig, Ring, Xhci, CC_SHORT_PACKET, CC_SUCCESS,
    IOC, ISP, TRB_NORMAL, TRB_PORT_STATUS_CHANGE, TRB_TRANSFER_EVENT,
};

/// Interrupt TDs kept on the ring.
const QUEUED: usize = 4;
/// Bytes per report slot in the report buffer.
const SLOT: u64 = 64;
/// The tick while waiting for a report, and how many to wait (the test
/// types after `hid ready`).
const TICK: Duration = Duration::from_secs(1);
const REPORT_WAIT_TICKS: u32 = 60;
/// Reports accepted before giving up on seeing Enter.
const MAX_REPORTS: usize = 200;
/// HID usage id of Enter.
const KEY_ENTER: u8 = 0x28;

/// Interface class HID, subclass boot, protocol keyboard.
pub fn is_boot_keyboard(interface: &[u8]) -> bool {
    (interface[5], interface[6], interface[7]) == (3, 1, 1)
}

/// The Interval field for a periodic endpoint's bInterval: frames (1 ms) at
/// full/low speed become a power of two of 125 µs microframes (clamped to
/// 8..1024 as xhci-hcd does); high speed and above already use 2^(b-1).
fn interval(speed: u32, b_interval: u8) -> u32 {
    match speed {
        1 | 2 => {
            let frames = u32::from(b_interval.max(1)) * 8;
            (31 - frames.leading_zeros()).clamp(3, 10)
        }
        _ => u32::from(b_interval.clamp(1, 16)) - 1,
    }
}

/// The text of a press: letters, digits and space, Shift for capitals.
fn key_char(modifiers: u8, usage: u8) -> Option<char> {
    let shift = modifiers & 0x22 != 0;
    match usage {
        0x04..=0x1d => {
            let c = (b'a' + usage - 0x04) as char;
            Some(if shift { c.to_ascii_uppercase() } else { c })
        }
        0x1e..=0x26 => Some((b'1' + usage - 0x1e) as char),
        0x27 => Some('0'),
        0x2c => Some(' '),
        _ => None,
    }
}

pub fn run(xhci: &mut Xhci, dev: &mut Device, config: &[u8]) {
    // The keyboard interface, its HID descriptor and interrupt IN endpoint.
    let mut number = None;
    let mut report_length = 0u16;
    let mut endpoint = None;
    for d in descriptors(config) {
        match (d[1], d.len()) {
            (4, 9..) => {
                if number.is_some() && endpoint.is_some() {
                    break;
                }
                number = is_boot_keyboard(d).then_some(d[2]);
            }
            (0x21, 9..) if number.is_some() && d[6] == 0x22 => {
                report_length = u16::from_le_bytes([d[7], d[8]]);
            }
            (5, 7..) if number.is_some() && d[3] & 3 == 3 && d[2] & 0x80 != 0 => {
                let mps = u16::from_le_bytes([d[4], d[5]]) & 0x7ff;
                endpoint = Some((d[2], u32::from(mps), d[6]));
            }
            _ => {}
        }
    }
    let Some(((address, max_packet, b_interval), iface)) = endpoint.zip(number) else {
        fail!("hid-endpoint", "{config:02x?}")
    };
    check!(
        (1..=SLOT as u32).contains(&max_packet),
        "hid-endpoint",
        "max packet {max_packet}"
    );
    println!(
        "usb hid interface={iface} endpoint={address:#04x}/{max_packet} interval={b_interval} report_descriptor={report_length}"
    );
    let mut ring = Ring::new();
    dev.configure(
        xhci,
        &[EndpointConfig {
            address,
            ep_type: 7,
            max_packet,
            interval: interval(dev.speed, b_interval),
            average_trb: max_packet,
            ring: ring.buf.addr(),
        }],
    );
    dev.control(xhci, [0, 9, config[5], 0, 0, 0, 0, 0], "set-configuration");
    dev.control(xhci, [0x21, 0x0a, 0, 0, iface, 0, 0, 0], "set-idle");
    dev.control(xhci, [0x21, 0x0b, 0, 0, iface, 0, 0, 0], "set-protocol");
    let mut setup = get_descriptor(0x22, 0, report_length);
    setup[0] = 0x81;
    setup[4] = iface;
    let rd = dev.control(xhci, setup, "report-descriptor");
    check!(
        rd.len() == usize::from(report_length),
        "report-descriptor",
        "{} of {report_length}",
        rd.len()
    );
    println!(
        "hid report-descriptor fnv={:08x}",
        rd.iter().fold(0x811c_9dc5u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    );
    // Output report: LEDs, Num Lock on.
    dev.buf.write::<u8>(0, 1);
    dev.control(xhci, [0x21, 0x09, 0, 2, iface, 0, 1, 0], "set-report");

    // Interrupt TDs, one report slot each; completions come back in order.
    let reports = Dma::new(QUEUED as u64 * SLOT);
    let mut queued = VecDeque::new();
    let queue = |ring: &mut Ring, queued: &mut VecDeque<(u64, u64)>, slot: u64| {
        let at = reports.addr() + slot * SLOT;
        let trb = ring.push(at, max_packet, TRB_NORMAL << 10 | ISP | IOC);
        queued.push_back((trb, slot));
    };
    for slot in 0..QUEUED as u64 {
        queue(&mut ring, &mut queued, slot);
    }
    dev.doorbell(xhci, crate::xhci::dci(address));
    println!("hid ready");

    let mut typed = String::new();
    let mut previous = [0u8; 8];
    let mut enter = false;
    let mut ticks = 0u32;
    for count in 1..=MAX_REPORTS {
        // Ticks while waiting show the guest polls on (a device plugged in
        // or out elsewhere must not stall it).
        let mut waited = 0;
        let e = loop {
            match xhci.next_event(TICK) {
                Some(e) if e.kind() == TRB_TRANSFER_EVENT => break e,
                Some(e) if e.kind() == TRB_PORT_STATUS_CHANGE => {
                    let port = (e.parameter >> 24) as u8;
                    let portsc = xhci.acknowledge_port(port);
                    println!("hid port-change port={port} connected={}", portsc & 1);
                }
                Some(_) => {}
                None => {
                    ticks += 1;
                    waited += 1;
                    println!("hid tick {ticks}");
                    check!(
                        waited < REPORT_WAIT_TICKS,
                        "hid-report",
                        "no report in {waited} s after {count} ({typed:?})"
                    );
                }
            }
        };
        let Some((trb, slot)) = queued.pop_front() else {
            fail!("hid-report", "an event with no TD queued")
        };
        check!(
            e.slot() == dev.slot && e.parameter == trb,
            "hid-report",
            "event for slot {} trb {:#x}, expected {trb:#x}",
            e.slot(),
            e.parameter
        );
        let length = match e.code() {
            CC_SUCCESS => max_packet,
            CC_SHORT_PACKET => max_packet.saturating_sub(e.status & 0xff_ffff),
            code => fail!("hid-report", "completion code {code}"),
        };
        let mut report = [0u8; 8];
        let n = (length as usize).min(8);
        reports.copy_to(slot * SLOT, &mut report[..n]);
        queue(&mut ring, &mut queued, slot);
        dev.doorbell(xhci, crate::xhci::dci(address));
        let mut hex = String::new();
        for b in report {
            // Writing to a String cannot fail.
            let _ = write!(hex, " {b:02x}");
        }
        println!("hid report{hex}");
        // Presses: usages in this report that were not in the previous one.
        for &usage in report[2..].iter().filter(|&&u| u != 0) {
            if previous[2..].contains(&usage) {
                continue;
            }
            if usage == KEY_ENTER {
                enter = true;
            } else if let Some(c) = key_char(report[0], usage) {
                typed.push(c);
            }
        }
        previous = report;
        if enter && report[2..].iter().all(|&u| u == 0) {
            println!("hid typed \"{typed}\" reports={count}");
            return;
        }
    }
    fail!(
        "hid-report",
        "no Enter in {MAX_REPORTS} reports ({typed:?})"
    );
}
