//! usb-storage (`usb_stor_Bulk_max_lun`, `usb_stor_Bulk_transport`) on the
//! bulk-only interface: GET_MAX_LUN, then CBW / data / CSW for INQUIRY, TEST
//! UNIT READY, READ CAPACITY(10), READ(10) of known sectors, a READ(10) past
//! the end and the REQUEST SENSE that explains it.

use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::{check, println, time};

use crate::xhci::{descriptors, Device, EndpointConfig, Ring, Xhci};

const SECTOR: usize = 512;
/// Sectors read with one READ(10): LBA 0 onward.
const READ_SECTORS: u16 = 16;
/// A second READ(10), of one sector further in.
const FAR_LBA: u32 = 40;
/// A stick at least this big is also benchmarked: read from LBA 0 with
/// READ(10)s of `BENCH_SECTORS`, timed by the TSC.
const BENCH_BYTES: u32 = 16 << 20;
const BENCH_SECTORS: u16 = 128;

/// The bulk-only interface's endpoints and their rings.
struct Storage {
    bulk_in: (u8, Ring),
    bulk_out: (u8, Ring),
}

impl Storage {
    /// One bulk TD; returns the bytes moved.
    fn bulk(&mut self, dev: &Device, xhci: &mut Xhci, is_in: bool, length: u32, step: &str) -> u32 {
        let (endpoint, ring) = if is_in {
            (self.bulk_in.0, &mut self.bulk_in.1)
        } else {
            (self.bulk_out.0, &mut self.bulk_out.1)
        };
        dev.transfer(xhci, endpoint, ring, length, step)
    }

    /// Bulk-only transport: CBW, data in (if `length` > 0), CSW. Returns
    /// the data and the CSW status.
    fn scsi(
        &mut self,
        dev: &Device,
        xhci: &mut Xhci,
        tag: u32,
        cdb: &[u8],
        length: u32,
        step: &str,
    ) -> (Vec<u8>, u8) {
        let mut cbw = [0u8; 31];
        cbw[..4].copy_from_slice(b"USBC");
        cbw[4..8].copy_from_slice(&tag.to_le_bytes());
        cbw[8..12].copy_from_slice(&length.to_le_bytes());
        cbw[12] = 0x80;
        cbw[14] = cdb.len() as u8;
        cbw[15..15 + cdb.len()].copy_from_slice(cdb);
        dev.buf.copy_from(0, &cbw);
        let sent = self.bulk(dev, xhci, false, 31, step);
        check!(sent == 31, step, "CBW: {sent} bytes sent");
        let mut data = Vec::new();
        if length > 0 {
            let got = self.bulk(dev, xhci, true, length, step) as usize;
            data.resize(got, 0);
            dev.buf.copy_to(0, &mut data);
        }
        let got = self.bulk(dev, xhci, true, 13, step);
        let mut csw = [0u8; 13];
        dev.buf.copy_to(0, &mut csw);
        check!(got == 13 && &csw[..4] == b"USBS", step, "CSW {csw:02x?}");
        let csw_tag = u32::from_le_bytes([csw[4], csw[5], csw[6], csw[7]]);
        check!(csw_tag == tag, step, "CSW tag {csw_tag} for {tag}");
        (data, csw[12])
    }
}

/// Whether an interface descriptor is mass storage, SCSI, bulk-only.
pub fn is_storage(interface: &[u8]) -> bool {
    (interface[5], interface[6], interface[7]) == (8, 6, 0x50)
}

/// Configures the stick's bulk endpoints and reads it.
pub fn run(xhci: &mut Xhci, dev: &mut Device, config: &[u8]) {
    let mut st = Storage {
        bulk_in: (0, Ring::new()),
        bulk_out: (0, Ring::new()),
    };
    // The mass-storage interface's bulk endpoints.
    let mut storage = false;
    let mut mps_in = 0u32;
    let mut mps_out = 0u32;
    for d in descriptors(config) {
        match (d[1], d.len()) {
            (4, 9..) => storage = is_storage(d),
            (5, 7..) if storage && d[3] & 3 == 2 => {
                let mps = u32::from(u16::from_le_bytes([d[4], d[5]]) & 0x7ff);
                if d[2] & 0x80 != 0 {
                    st.bulk_in.0 = d[2];
                    mps_in = mps;
                } else {
                    st.bulk_out.0 = d[2];
                    mps_out = mps;
                }
            }
            _ => {}
        }
    }
    check!(
        st.bulk_in.0 != 0 && st.bulk_out.0 != 0,
        "bulk-endpoints",
        "{config:02x?}"
    );
    println!(
        "usb storage interface bulk_in={:#04x}/{mps_in} bulk_out={:#04x}/{mps_out}",
        st.bulk_in.0, st.bulk_out.0
    );
    // Configure Endpoint (usb_hcd_alloc_bandwidth), then SET_CONFIGURATION.
    let endpoint = |address, ep_type, max_packet, ring: &Ring| EndpointConfig {
        address,
        ep_type,
        max_packet,
        interval: 0,
        average_trb: 3072,
        ring: ring.buf.addr(),
    };
    dev.configure(
        xhci,
        &[
            endpoint(st.bulk_in.0, 6, mps_in, &st.bulk_in.1),
            endpoint(st.bulk_out.0, 2, mps_out, &st.bulk_out.1),
        ],
    );
    dev.control(xhci, [0, 9, config[5], 0, 0, 0, 0, 0], "set-configuration");

    // usb-storage: GET_MAX_LUN, then SCSI over bulk-only transport.
    let lun = dev.control(xhci, [0xa1, 0xfe, 0, 0, 0, 0, 1, 0], "max-lun");
    check!(lun.len() == 1, "max-lun", "{lun:02x?}");
    let (inquiry, status) = st.scsi(dev, xhci, 1, &[0x12, 0, 0, 0, 36, 0], 36, "inquiry");
    check!(
        status == 0 && inquiry.len() == 36,
        "inquiry",
        "status {status} len {}",
        inquiry.len()
    );
    println!(
        "storage inquiry type={} removable={} vendor=\"{}\" product=\"{}\" revision=\"{}\"",
        inquiry[0] & 0x1f,
        inquiry[1] >> 7,
        text(&inquiry[8..16]),
        text(&inquiry[16..32]),
        text(&inquiry[32..36])
    );
    let (_, status) = st.scsi(dev, xhci, 2, &[0; 6], 0, "test-unit-ready");
    check!(status == 0, "test-unit-ready", "status {status}");
    let (cap, status) = st.scsi(
        dev,
        xhci,
        3,
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        8,
        "read-capacity",
    );
    check!(
        status == 0 && cap.len() == 8,
        "read-capacity",
        "status {status}"
    );
    let last = u32::from_be_bytes([cap[0], cap[1], cap[2], cap[3]]);
    let block = u32::from_be_bytes([cap[4], cap[5], cap[6], cap[7]]);
    println!(
        "storage capacity blocks={} block_size={block}",
        u64::from(last) + 1
    );
    check!(
        block as usize == SECTOR && last >= FAR_LBA,
        "read-capacity",
        "{cap:02x?}"
    );

    let read10 = |lba: u32, count: u16| {
        let [a, b, c, d] = lba.to_be_bytes();
        let [e, f] = count.to_be_bytes();
        [0x28, 0, a, b, c, d, 0, e, f, 0]
    };
    let length = u32::from(READ_SECTORS) * SECTOR as u32;
    let (data, status) = st.scsi(dev, xhci, 4, &read10(0, READ_SECTORS), length, "read10");
    check!(
        status == 0 && data.len() == length as usize,
        "read10",
        "status {status} len {}",
        data.len()
    );
    println!(
        "storage read lba=0 count={READ_SECTORS} fnv={:08x} first=\"{}\"",
        fnv1a32(&data),
        text(&data[..12])
    );
    let (data, status) = st.scsi(
        dev,
        xhci,
        5,
        &read10(FAR_LBA, 1),
        SECTOR as u32,
        "read10-far",
    );
    check!(
        status == 0 && data.len() == SECTOR,
        "read10-far",
        "status {status}"
    );
    println!(
        "storage read lba={FAR_LBA} count=1 fnv={:08x} first=\"{}\"",
        fnv1a32(&data),
        text(&data[..12])
    );
    // Past the end: the command fails, REQUEST SENSE says why.
    let (data, status) = st.scsi(
        dev,
        xhci,
        6,
        &read10(last + 1, 1),
        SECTOR as u32,
        "read10-end",
    );
    check!(
        status == 1,
        "read10-end",
        "status {status} with {} bytes",
        data.len()
    );
    let (sense, status) = st.scsi(dev, xhci, 7, &[0x03, 0, 0, 0, 18, 0], 18, "request-sense");
    check!(
        status == 0 && sense.len() >= 14,
        "request-sense",
        "status {status}"
    );
    println!(
        "storage sense key={:x} asc={:02x} ascq={:02x}",
        sense[2] & 0xf,
        sense[12],
        sense[13]
    );
    if u64::from(last) + 1 >= u64::from(BENCH_BYTES) / SECTOR as u64 {
        bench(&mut st, dev, xhci);
    }
}

/// Sequential READ(10)s over `BENCH_BYTES`; each chunk's first sector must
/// name its LBA (the peer's disk pattern). Prints the rate.
fn bench(st: &mut Storage, dev: &Device, xhci: &mut Xhci) {
    let chunk = u32::from(BENCH_SECTORS) * SECTOR as u32;
    let reads = BENCH_BYTES / chunk;
    let watch = time::Stopwatch::start();
    for i in 0..reads {
        let lba = i * u32::from(BENCH_SECTORS);
        let [a, b, c, d] = lba.to_be_bytes();
        let [e, f] = BENCH_SECTORS.to_be_bytes();
        let cdb = [0x28, 0, a, b, c, d, 0, e, f, 0];
        let (data, status) = st.scsi(dev, xhci, 100 + i, &cdb, chunk, "bench");
        check!(
            status == 0 && data.len() == chunk as usize,
            "bench",
            "status {status} len {}",
            data.len()
        );
        let mut label = *b"LBA 00000000";
        for (k, byte) in label[4..].iter_mut().enumerate() {
            let nibble = (lba >> (28 - 4 * k)) & 0xf;
            *byte = b"0123456789abcdef"[nibble as usize];
        }
        check!(
            data[..12] == label,
            "bench",
            "lba {lba}: {}",
            text(&data[..12])
        );
    }
    let ns = watch.elapsed_ns().max(1);
    let kb_per_s = u64::from(BENCH_BYTES) * 1_000_000 / ns;
    println!(
        "storage bench bytes={BENCH_BYTES} reads={reads} ns={ns} mb_per_s={}.{:03}",
        kb_per_s / 1000,
        kb_per_s % 1000
    );
}

fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
