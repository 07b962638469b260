use super::*;
use crate::peer::HostPeer;
use crate::{BulkPacket, Caps, Limits, Packet, Parser, Role};

fn cbw(tag: u32, length: u32, data_in: bool, cdb: &[u8]) -> Vec<u8> {
    let mut b = CBW_SIGNATURE.to_le_bytes().to_vec();
    b.extend(tag.to_le_bytes());
    b.extend(length.to_le_bytes());
    b.push(if data_in { 0x80 } else { 0 });
    b.push(0);
    b.push(cdb.len() as u8);
    let mut c = [0u8; 16];
    c[..cdb.len()].copy_from_slice(cdb);
    b.extend(c);
    b
}

/// (tag, residue, status) of a 13-byte CSW.
fn csw(b: &[u8]) -> (u32, u32, u8) {
    assert_eq!(b.len(), 13, "{b:?}");
    assert_eq!(&b[..4], b"USBS");
    let le = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    (le(4), le(8), b[12])
}

/// One command with a data-in phase: (data, CSW).
fn run_in(d: &mut MassStorage, tag: u32, length: u32, cdb: &[u8]) -> (Vec<u8>, (u32, u32, u8)) {
    let (s, _) = d.bulk(STORAGE_BULK_OUT, 31, &cbw(tag, length, true, cdb));
    assert_eq!(s, Status::SUCCESS);
    let (s, data) = d.bulk(STORAGE_BULK_IN, length, &[]);
    assert_eq!(s, Status::SUCCESS);
    let (s, status) = d.bulk(STORAGE_BULK_IN, 13, &[]);
    assert_eq!(s, Status::SUCCESS);
    (data, csw(&status))
}

fn read10(lba: u32, count: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend(lba.to_be_bytes());
    c.push(0);
    c.extend(count.to_be_bytes());
    c.push(0);
    c
}

#[test]
fn inquiry_capacity_and_reads_follow_bulk_only_transport() {
    let mut d = MassStorage::new(64);
    let (data, status) = run_in(&mut d, 7, 36, &[0x12, 0, 0, 0, 36, 0]);
    assert_eq!(status, (7, 0, CSW_PASSED));
    assert_eq!((data[0], data[1], data.len()), (0, 0x80, 36));
    assert_eq!(&data[8..16], STORAGE_VENDOR);
    assert_eq!(&data[16..32], STORAGE_PRODUCT);

    let (s, _) = d.bulk(STORAGE_BULK_OUT, 31, &cbw(8, 0, false, &[0; 6]));
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1), (8, 0, CSW_PASSED));

    let (data, status) = run_in(&mut d, 9, 8, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(status, (9, 0, CSW_PASSED));
    assert_eq!(data, [0, 0, 0, 63, 0, 0, 2, 0]);

    let (data, status) = run_in(&mut d, 10, 1024, &read10(5, 2));
    assert_eq!(status, (10, 0, CSW_PASSED));
    assert_eq!(&data[..12], b"LBA 00000005");
    assert_eq!(&data[512..524], b"LBA 00000006");
    assert_eq!(data, d.disk()[5 * 512..7 * 512]);
    assert_ne!(data[100], data[612], "sectors differ");
}

#[test]
fn reads_in_pieces_and_short_data_report_a_residue() {
    let mut d = MassStorage::new(8);
    d.bulk(STORAGE_BULK_OUT, 31, &cbw(1, 1024, true, &read10(0, 2)));
    let (_, a) = d.bulk(STORAGE_BULK_IN, 512, &[]);
    let (_, b) = d.bulk(STORAGE_BULK_IN, 512, &[]);
    assert_eq!([a, b].concat(), d.disk()[..1024]);
    assert_eq!(csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1), (1, 0, CSW_PASSED));
    // INQUIRY asked with room for 96 bytes: 36 come, residue 60.
    let (data, status) = run_in(&mut d, 2, 96, &[0x12, 0, 0, 0, 96, 0]);
    assert_eq!((data.len(), status), (36, (2, 60, CSW_PASSED)));
}

#[test]
fn errors_set_sense_data() {
    let mut d = MassStorage::new(8);
    // Past the end: no data, failed, then REQUEST SENSE says why.
    let (data, status) = run_in(&mut d, 3, 512, &read10(8, 1));
    assert_eq!((data.len(), status), (0, (3, 512, CSW_FAILED)));
    let (sense, status) = run_in(&mut d, 4, 18, &[0x03, 0, 0, 0, 18, 0]);
    assert_eq!(status, (4, 0, CSW_PASSED));
    assert_eq!((sense[0], sense[2], sense[12]), (0x70, 5, 0x21));
    // The sense was consumed.
    let (sense, _) = run_in(&mut d, 5, 18, &[0x03, 0, 0, 0, 18, 0]);
    assert_eq!((sense[2], sense[12]), (0, 0));
    // An LBA + count that wraps around u32.
    let (_, status) = run_in(&mut d, 6, 512, &read10(u32::MAX, 1));
    assert_eq!(status.2, CSW_FAILED);
    // Unknown opcode.
    let (_, status) = run_in(&mut d, 7, 8, &[0xee, 0, 0, 0, 0, 0]);
    assert_eq!(status, (7, 8, CSW_FAILED));
    let (sense, _) = run_in(&mut d, 8, 18, &[0x03, 0, 0, 0, 18, 0]);
    assert_eq!(sense[12], 0x20);
}

#[test]
fn write10_changes_the_disk() {
    let mut d = MassStorage::new(8);
    let mut c = vec![0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0];
    d.bulk(STORAGE_BULK_OUT, 31, &cbw(11, 512, false, &c));
    d.bulk(STORAGE_BULK_OUT, 256, &[0xaa; 256]);
    d.bulk(STORAGE_BULK_OUT, 256, &[0x55; 256]);
    assert_eq!(
        csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1),
        (11, 0, CSW_PASSED)
    );
    let (data, _) = run_in(&mut d, 12, 512, &read10(3, 1));
    assert_eq!(
        (data[0], data[255], data[256], data[511]),
        (0xaa, 0xaa, 0x55, 0x55)
    );
    // Too much data for the command: phase error, the disk keeps its bytes.
    c[5] = 4;
    d.bulk(STORAGE_BULK_OUT, 31, &cbw(13, 512, false, &c));
    d.bulk(STORAGE_BULK_OUT, 600, &[1; 600]);
    assert_eq!(csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1).2, CSW_PHASE_ERROR);
    assert_eq!(d.disk()[4 * 512], b'L');
    assert_eq!(d.tags, [11, 12, 13]);
}

#[test]
fn hostile_cbws_get_a_phase_error_csw() {
    let mut d = MassStorage::new(8);
    let good = cbw(21, 36, true, &[0x12, 0, 0, 0, 36, 0]);
    let mut bad_sig = good.clone();
    bad_sig[0] = b'X';
    let mut bad_lun = good.clone();
    bad_lun[13] = 1;
    let mut bad_cdb_len = good.clone();
    bad_cdb_len[14] = 0;
    let cases: [&[u8]; 6] = [
        &bad_sig,
        &bad_lun,
        &bad_cdb_len,
        &good[..30],
        &[good.clone(), vec![0]].concat(),
        &[],
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        let (s, _) = d.bulk(STORAGE_BULK_OUT, bytes.len() as u32, bytes);
        assert_eq!(s, Status::SUCCESS);
        let (s, status) = d.bulk(STORAGE_BULK_IN, 13, &[]);
        assert_eq!(s, Status::SUCCESS, "case {i}");
        assert_eq!(csw(&status).2, CSW_PHASE_ERROR, "case {i}");
    }
    // Data expected but the guest says "no data": phase error.
    d.bulk(STORAGE_BULK_OUT, 31, &cbw(22, 0, true, &read10(0, 1)));
    assert_eq!(
        csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1),
        (22, 0, CSW_PHASE_ERROR)
    );
    // Data-in command flagged as OUT.
    d.bulk(STORAGE_BULK_OUT, 31, &cbw(23, 512, false, &read10(0, 1)));
    assert_eq!(
        csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1),
        (23, 512, CSW_PHASE_ERROR)
    );
    // IN before any command: stall; IN too short for the CSW: stall, CSW kept.
    assert_eq!(d.bulk(STORAGE_BULK_IN, 13, &[]).0, Status::STALL);
    d.bulk(STORAGE_BULK_OUT, 31, &cbw(24, 0, false, &[0; 6]));
    assert_eq!(d.bulk(STORAGE_BULK_IN, 4, &[]).0, Status::STALL);
    assert_eq!(
        csw(&d.bulk(STORAGE_BULK_IN, 13, &[]).1),
        (24, 0, CSW_PASSED)
    );
    // Bulk-only reset returns to the command phase; the device still works.
    d.bulk(
        STORAGE_BULK_OUT,
        31,
        &cbw(25, 36, true, &[0x12, 0, 0, 0, 36, 0]),
    );
    let reset = ControlPacket {
        endpoint: 0,
        request: 0xff,
        requesttype: 0x21,
        status: Status::SUCCESS,
        value: 0,
        index: 0,
        length: 0,
        data: vec![],
    };
    assert_eq!(d.control(&reset).0, Status::SUCCESS);
    let (data, status) = run_in(&mut d, 26, 36, &[0x12, 0, 0, 0, 36, 0]);
    assert_eq!((data.len(), status), (36, (26, 0, CSW_PASSED)));
}

#[test]
fn storage_peer_answers_descriptors_max_lun_and_bulk_packets() {
    let mut peer = HostPeer::new(MassStorage::new(16));
    let mut guest = Parser::new(Role::Guest, Caps::ALL, Limits::default());
    let hello = guest.hello("guest");
    guest.feed(&peer.take_output());
    peer.received(&hello).unwrap();
    guest.feed(&peer.take_output());
    let got: Vec<Packet> = std::iter::from_fn(|| guest.next())
        .map(|r| r.unwrap().packet)
        .collect();
    assert!(
        matches!(&got[1], Packet::InterfaceInfo(i) if (i.class[0], i.subclass[0], i.protocol[0]) == (8, 6, 0x50))
    );
    assert!(
        matches!(&got[2], Packet::EpInfo(e) if e.ep_type[ep_index(0x81)] == ep_type::BULK && e.max_packet_size[ep_index(0x02)] == 512)
    );
    assert!(matches!(got[3], Packet::DeviceConnect(c) if c.speed == Speed::HIGH));

    let control = |request, requesttype, value, length| ControlPacket {
        endpoint: 0x80,
        request,
        requesttype,
        status: Status::SUCCESS,
        value,
        index: 0,
        length,
        data: vec![],
    };
    let mut ask = |guest: &mut Parser, id: u64, p: Packet| -> Packet {
        peer.received(&guest.encode(id, &p).unwrap()).unwrap();
        guest.feed(&peer.take_output());
        let r = guest.next().unwrap().unwrap();
        assert_eq!(r.id, id);
        r.packet
    };
    let Packet::Control(c) = ask(&mut guest, 1, Packet::Control(control(6, 0x80, 0x200, 255)))
    else {
        panic!()
    };
    assert_eq!(
        (c.length, &c.data[9..18]),
        (32, &[9, 4, 0, 0, 2, 8, 6, 0x50, 0][..])
    );
    let Packet::Control(c) = ask(&mut guest, 2, Packet::Control(control(0xfe, 0xa1, 0, 1))) else {
        panic!()
    };
    assert_eq!((c.status, c.data), (Status::SUCCESS, vec![0]));

    let bulk = |endpoint, length, data: Vec<u8>| BulkPacket {
        endpoint,
        status: Status::SUCCESS,
        length,
        stream_id: 0,
        data,
    };
    let p = ask(
        &mut guest,
        3,
        Packet::Bulk(bulk(0x02, 31, cbw(5, 512, true, &read10(9, 1)))),
    );
    assert!(matches!(p, Packet::Bulk(b) if b.status == Status::SUCCESS && b.length == 31));
    let Packet::Bulk(b) = ask(&mut guest, 4, Packet::Bulk(bulk(0x81, 512, vec![]))) else {
        panic!()
    };
    assert_eq!((b.length, &b.data[..12]), (512, &b"LBA 00000009"[..]));
    let Packet::Bulk(b) = ask(&mut guest, 5, Packet::Bulk(bulk(0x81, 13, vec![]))) else {
        panic!()
    };
    assert_eq!(csw(&b.data), (5, 0, CSW_PASSED));
}

#[test]
fn pattern_and_checksum_are_stable() {
    // The e2e test compares guest output against these; pin them.
    assert_eq!(fnv1a32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    assert_eq!(pattern_byte(0x12, 4), b'0');
    assert_eq!(pattern_byte(0x12, 11), b'2');
    assert_ne!(pattern_byte(1, 100), pattern_byte(2, 100));
}
