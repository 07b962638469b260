//! The RECORD channel: START when the guest captures, the client's raw 48 kHz
//! frames converted to the guest's rate into the port, STOP; malformed data
//! dropped with the channel still serving.

use std::io::Write;

use super::*;
use crate::client::{link_channel, AnyStream};
use crate::opus::OpusEncoder;
use crate::port::{AudioInControl, AudioInPort, PcmFormat};
use crate::proto::audio::{FMT_S16, MODE_OPUS, MODE_RAW, RECORD_CAP_OPUS};
use crate::proto::{channel as ch, record_msg, record_msgc};

#[derive(Default)]
struct Mic {
    control: Mutex<Option<Arc<dyn AudioInControl>>>,
    samples: Mutex<Vec<i16>>,
}

impl AudioInPort for Mic {
    fn attach(&self, control: Arc<dyn AudioInControl>) {
        *self.control.lock().unwrap() = Some(control);
    }
    fn captured(&self, samples: &[i16]) {
        self.samples.lock().unwrap().extend_from_slice(samples);
    }
}

fn read_msg(s: &mut AnyStream) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut h = [0u8; 6];
    s.read_exact(&mut h).unwrap();
    let size = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
    let mut body = vec![0; size];
    s.read_exact(&mut body).unwrap();
    (u16::from_le_bytes([h[0], h[1]]), body)
}

fn send(s: &mut AnyStream, t: u16, body: &[u8]) {
    let mut m = t.to_le_bytes().to_vec();
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
}

#[test]
fn client_microphone_reaches_the_guest_at_its_rate() {
    let mic = Arc::new(Mic::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            audio_in: Some(mic.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    let control = mic.control.lock().unwrap().clone().unwrap();
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    assert!(c
        .state()
        .channels_list
        .clone()
        .unwrap()
        .contains(&(ch::RECORD, 0)));
    let id = c.state().session_id;
    let (mut s, _) = link_channel(
        &server.local_addr(),
        id,
        ch::RECORD,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    // Data before the guest captures is dropped.
    send(&mut s, record_msgc::DATA, &[0; 4 + 1920]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(mic.samples.lock().unwrap().is_empty());

    control.start(PcmFormat {
        channels: 2,
        rate: 22_050,
    });
    let (t, start) = read_msg(&mut s);
    assert_eq!(t, record_msg::START);
    assert_eq!(&start[..4], &2u32.to_le_bytes());
    assert_eq!(u16::from_le_bytes([start[4], start[5]]), FMT_S16);
    assert_eq!(&start[6..10], &48_000u32.to_le_bytes());
    // spice-gtk: MODE, START_MARK, then DATA frames of a 1 kHz tone.
    let mut mode = 0u32.to_le_bytes().to_vec();
    mode.extend_from_slice(&MODE_RAW.to_le_bytes());
    send(&mut s, record_msgc::MODE, &mode);
    send(&mut s, record_msgc::START_MARK, &0u32.to_le_bytes());
    for frame in 0..100 {
        let mut body = (frame as u32 * 10).to_le_bytes().to_vec();
        for i in 0..480 {
            let n = frame * 480 + i;
            let v = (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 48_000.0).sin();
            let v = (v * 10_000.0) as i16;
            body.extend_from_slice(&v.to_le_bytes());
            body.extend_from_slice(&v.to_le_bytes());
        }
        send(&mut s, record_msgc::DATA, &body);
    }
    // A torn frame: its tail is dropped, the channel goes on.
    send(&mut s, record_msgc::DATA, &[0, 0, 0, 0, 1, 2, 3]);
    let deadline = std::time::Instant::now() + T;
    while mic.samples.lock().unwrap().len() < 2 * 21_500 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let got = mic.samples.lock().unwrap().clone();
    assert!(
        (2 * 21_500..=2 * 22_050).contains(&got.len()),
        "{}",
        got.len()
    );
    let left: Vec<i16> = got.iter().step_by(2).copied().collect();
    let ups = left[1000..]
        .windows(2)
        .filter(|w| w[0] < 0 && w[1] >= 0)
        .count();
    let hz = ups as f64 * 22_050.0 / (left.len() - 1000) as f64;
    assert!((hz - 1000.0).abs() < 5.0, "{hz} Hz");

    control.stop();
    assert_eq!(read_msg(&mut s).0, record_msg::STOP);
    // Data after STOP is dropped; the guest sees nothing more.
    let before = mic.samples.lock().unwrap().len();
    send(&mut s, record_msgc::DATA, &[0; 4 + 1920]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(mic.samples.lock().unwrap().len(), before);
}

#[test]
fn opus_from_the_microphone_is_decoded_and_garbage_is_dropped() {
    let mic = Arc::new(Mic::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            audio_in: Some(mic.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    let control = mic.control.lock().unwrap().clone().unwrap();
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let (mut s, linked) = link_channel(
        &server.local_addr(),
        c.state().session_id,
        ch::RECORD,
        vec![1 << RECORD_CAP_OPUS],
        &ClientOptions::default(),
    )
    .unwrap();
    // spice-gtk encodes Opus only when the server offers it.
    assert_eq!(linked.channel_caps, [1 << RECORD_CAP_OPUS]);
    s.set_read_timeout(Some(T)).unwrap();
    control.start(PcmFormat {
        channels: 2,
        rate: 48_000,
    });
    assert_eq!(read_msg(&mut s).0, record_msg::START);
    let mut mode = 0u32.to_le_bytes().to_vec();
    mode.extend_from_slice(&MODE_OPUS.to_le_bytes());
    send(&mut s, record_msgc::MODE, &mode);
    send(&mut s, record_msgc::START_MARK, &0u32.to_le_bytes());
    let mut enc = OpusEncoder::new().unwrap();
    for frame in 0..100 {
        let pcm: Vec<i16> = (0..480)
            .flat_map(|i| {
                let n = frame * 480 + i;
                let v = (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 48_000.0).sin();
                let v = (v * 10_000.0) as i16;
                [v, v]
            })
            .collect();
        let mut body = (frame as u32 * 10).to_le_bytes().to_vec();
        body.extend_from_slice(&enc.encode(&pcm).unwrap());
        send(&mut s, record_msgc::DATA, &body);
        if frame == 50 {
            // Not Opus, and empty: dropped, the stream goes on.
            send(&mut s, record_msgc::DATA, &[0, 0, 0, 0, 0xff, 0xff, 0xff]);
            send(&mut s, record_msgc::DATA, &[0, 0, 0, 0]);
        }
    }
    let deadline = std::time::Instant::now() + T;
    while mic.samples.lock().unwrap().len() < 2 * 48_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let got = mic.samples.lock().unwrap().clone();
    assert!(
        (2 * 47_000..=2 * 48_000 + 2 * 960).contains(&got.len()),
        "{}",
        got.len()
    );
    let left: Vec<i16> = got.iter().step_by(2).copied().collect();
    let ups = left[4800..]
        .windows(2)
        .filter(|w| w[0] < 0 && w[1] >= 0)
        .count();
    let hz = ups as f64 * 48_000.0 / (left.len() - 4800) as f64;
    assert!((hz - 1000.0).abs() < 5.0, "{hz} Hz");
    // The channel is still up.
    control.stop();
    assert_eq!(read_msg(&mut s).0, record_msg::STOP);
}
