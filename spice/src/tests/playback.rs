//! The PLAYBACK channel: offered with an audio out port, MODE + START when the
//! guest plays, DATA in 10 ms frames at 48 kHz resampled from the guest's rate,
//! VOLUME/MUTE, STOP; nothing queued without a client.

use std::io::Read;
use std::time::Instant;

use super::*;
use crate::client::{link_channel, AnyStream};
use crate::opus::{OpusDecoder, MAX_PACKET};
use crate::port::{AudioOutPort, AudioOutSink, PcmFormat};
use crate::proto::audio::{
    FMT_S16, MODE_OPUS, MODE_RAW, PLAYBACK_CAP_LATENCY, PLAYBACK_CAP_OPUS, PLAYBACK_CAP_VOLUME,
};
use crate::proto::{channel as ch, playback_msg};

#[derive(Default)]
struct Card {
    sink: Mutex<Option<Arc<dyn AudioOutSink>>>,
    attached: Mutex<Vec<bool>>,
}

impl Card {
    fn sink(&self) -> Arc<dyn AudioOutSink> {
        self.sink.lock().unwrap().clone().expect("attached")
    }
}

impl AudioOutPort for Card {
    fn attach(&self, sink: Arc<dyn AudioOutSink>) {
        *self.sink.lock().unwrap() = Some(sink);
    }
    fn client_attached(&self, attached: bool) {
        self.attached.lock().unwrap().push(attached);
    }
}

/// One message with the mini header: u16 type, u32 size, body.
fn read_msg(s: &mut AnyStream) -> (u16, Vec<u8>) {
    let mut h = [0u8; 6];
    s.read_exact(&mut h).unwrap();
    let size = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
    let mut body = vec![0; size];
    s.read_exact(&mut body).unwrap();
    (u16::from_le_bytes([h[0], h[1]]), body)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn tone(hz: f64, rate: u32, frames: usize) -> Vec<i16> {
    (0..frames)
        .flat_map(|i| {
            let v = (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin();
            let s = (v * 12000.0) as i16;
            [s, s]
        })
        .collect()
}

#[test]
fn without_a_port_there_is_no_playback_channel() {
    let (server, _) = start(None);
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let list = c.state().channels_list.clone().unwrap();
    assert!(!list.contains(&(ch::PLAYBACK, 0)), "{list:?}");
}

#[test]
fn guest_tone_reaches_the_client_at_48k() {
    let card = Arc::new(Card::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            audio_out: Some(card.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    let sink = card.sink();
    // The guest plays before anyone listens: dropped, and no harm done.
    let format = PcmFormat {
        channels: 2,
        rate: 44_100,
    };
    sink.start(format);
    sink.frames(&tone(440.0, 44_100, 4410)).unwrap();

    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let list = c.state().channels_list.clone().unwrap();
    assert!(list.contains(&(ch::PLAYBACK, 0)), "{list:?}");
    let id = c.state().session_id;
    let (mut s, linked) = link_channel(
        &server.local_addr(),
        id,
        ch::PLAYBACK,
        vec![1 << PLAYBACK_CAP_VOLUME],
        &ClientOptions::default(),
    )
    .unwrap();
    // Offered as spice-server offers them; this client takes raw.
    assert_eq!(
        linked.channel_caps,
        [(1 << PLAYBACK_CAP_VOLUME) | (1 << PLAYBACK_CAP_OPUS)]
    );
    s.set_read_timeout(Some(T)).unwrap();
    // Joined mid-stream: MODE raw, then START at 48 kHz stereo S16.
    let (t, mode) = read_msg(&mut s);
    assert_eq!(t, playback_msg::MODE);
    assert_eq!(u16::from_le_bytes([mode[4], mode[5]]), MODE_RAW);
    let (t, start) = read_msg(&mut s);
    assert_eq!(t, playback_msg::START);
    assert_eq!(u32_at(&start, 0), 2);
    assert_eq!(u16::from_le_bytes([start[4], start[5]]), FMT_S16);
    assert_eq!(u32_at(&start, 6), 48_000);

    sink.volume(&[0xffff, 0x8000], false);
    let (t, v) = read_msg(&mut s);
    assert_eq!((t, v), (playback_msg::VOLUME, vec![2, 0xff, 0xff, 0, 0x80]));
    assert_eq!(read_msg(&mut s), (playback_msg::MUTE, vec![0]));

    // One second of a 440 Hz tone, in 10 ms pieces as the card's worker
    // pushes them: in real time. (Pushed ten times faster, as this test
    // did, the server's 200 ms queue overflowed whenever its task or the
    // reader was descheduled for ~20 ms on a loaded machine: `Full`.)
    let input = tone(440.0, 44_100, 44_100);
    let reader = std::thread::spawn(move || {
        let mut pcm = Vec::new();
        let mut last_time = 0;
        let mut frames = 0;
        loop {
            let (t, body) = read_msg(&mut s);
            match t {
                playback_msg::DATA => {
                    assert_eq!(body.len(), 4 + 1920, "480 stereo S16 samples");
                    let time = u32_at(&body, 0);
                    assert!(time >= last_time, "mm-time goes forward");
                    last_time = time;
                    frames += 1;
                    pcm.extend(
                        body[4..]
                            .chunks_exact(2)
                            .map(|c| i16::from_le_bytes([c[0], c[1]])),
                    );
                }
                playback_msg::STOP => return (frames, pcm, s),
                other => panic!("unexpected playback message {other}"),
            }
        }
    });
    for piece in input.chunks(882) {
        sink.frames(piece).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    sink.stop();
    let (frames, pcm, s) = reader.join().unwrap();
    assert!((95..=100).contains(&frames), "{frames} frames of 10 ms");
    let left: Vec<i16> = pcm.iter().step_by(2).copied().collect();
    let ups = left.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    let hz = ups as f64 * 48_000.0 / left.len() as f64;
    assert!((hz - 440.0).abs() < 3.0, "{hz} Hz");

    drop(s);
    let deadline = std::time::Instant::now() + T;
    while card.attached.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*card.attached.lock().unwrap(), [true, false]);
    // Without a client again: accepted and dropped.
    sink.start(format);
    sink.frames(&tone(440.0, 44_100, 441)).unwrap();
}

#[test]
fn a_client_with_the_opus_cap_gets_opus_that_decodes_to_the_tone() {
    let card = Arc::new(Card::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            audio_out: Some(card.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    let sink = card.sink();
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let (mut s, _) = link_channel(
        &server.local_addr(),
        c.state().session_id,
        ch::PLAYBACK,
        vec![(1 << PLAYBACK_CAP_VOLUME) | (1 << PLAYBACK_CAP_OPUS)],
        &ClientOptions::default(),
    )
    .unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    while card.attached.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    sink.start(PcmFormat {
        channels: 2,
        rate: 48_000,
    });
    let reader = std::thread::spawn(move || {
        let mut mode = None;
        let mut decoder = OpusDecoder::new().unwrap();
        let mut pcm = Vec::new();
        let mut largest = 0;
        loop {
            let (t, body) = read_msg(&mut s);
            match t {
                playback_msg::MODE => mode = Some(u16::from_le_bytes([body[4], body[5]])),
                playback_msg::START => assert_eq!(u32_at(&body, 6), 48_000),
                playback_msg::DATA => {
                    largest = largest.max(body.len() - 4);
                    pcm.extend_from_slice(decoder.decode(&body[4..]).unwrap());
                }
                playback_msg::STOP => return (mode, largest, pcm),
                playback_msg::VOLUME | playback_msg::MUTE => {}
                other => panic!("unexpected playback message {other}"),
            }
        }
    });
    // In real time, as a card plays (see the test above).
    let input = tone(440.0, 48_000, 48_000);
    for piece in input.chunks(960) {
        sink.frames(piece).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    sink.stop();
    let (mode, largest, pcm) = reader.join().unwrap();
    assert_eq!(mode, Some(MODE_OPUS));
    assert!(
        largest > 0 && largest <= MAX_PACKET,
        "{largest} bytes a packet"
    );
    assert!(pcm.len() >= 95 * 960, "{} samples decoded", pcm.len());
    let left: Vec<i16> = pcm[9600..].iter().step_by(2).copied().collect();
    let ups = left.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    let hz = ups as f64 * 48_000.0 / left.len() as f64;
    assert!((hz - 440.0).abs() < 3.0, "{hz} Hz");
}

/// spice-gtk sets its session clock from MAIN_INIT's multi_media_time (the
/// server's clock less 400 ms) and then from the playback DATA stamps, and
/// schedules video frames against it: the stamps must be that same clock,
/// taken when the card delivered the samples.
#[test]
fn data_is_stamped_on_the_main_channels_clock() {
    let card = Arc::new(Card::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            audio_out: Some(card.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    // Let the server's clock run a while: an epoch taken per client would show.
    std::thread::sleep(Duration::from_millis(300));
    let sink = card.sink();
    let before_init = Instant::now();
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let after_init = Instant::now();
    let Some(crate::client::decode::ServerMsg::MainInit {
        multi_media_time, ..
    }) = c.state().main_init.clone()
    else {
        panic!("no MAIN_INIT");
    };
    // The server's clock at INIT.
    // The server's clock at INIT, which must not have wrapped below zero.
    assert!(multi_media_time < u32::MAX / 2, "{multi_media_time}");
    let clock_at_init = i64::from(multi_media_time) + 400;
    let (mut s, _) = link_channel(
        &server.local_addr(),
        c.state().session_id,
        ch::PLAYBACK,
        vec![1 << PLAYBACK_CAP_VOLUME],
        &ClientOptions::default(),
    )
    .unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    while card.attached.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let format = PcmFormat {
        channels: 2,
        rate: 48_000,
    };
    let start_window = (Instant::now(), ());
    sink.start(format);
    let start_window = (start_window.0, Instant::now());
    std::thread::sleep(Duration::from_millis(150));
    let push_window = Instant::now();
    sink.frames(&tone(440.0, 48_000, 4800)).unwrap();
    let push_window = (push_window, Instant::now());
    // Read late: the stamps say when the card delivered, not when read.
    std::thread::sleep(Duration::from_millis(300));
    // What the server's clock can have read at an instant in [from, to].
    let bounds = |from: Instant, to: Instant| {
        let ms = |a: Instant, b: Instant| a.saturating_duration_since(b).as_millis() as i64;
        (
            clock_at_init + ms(from, after_init) - 1,
            clock_at_init + ms(to, before_init) + 1,
        )
    };
    let mut data = 0;
    let mut last = 0;
    while data < 10 {
        let (t, body) = read_msg(&mut s);
        let stamp = i64::from(u32_at(&body, 0));
        match t {
            playback_msg::START => {
                let (lo, hi) = bounds(start_window.0, start_window.1);
                let time = i64::from(u32_at(&body, 10));
                assert!((lo..=hi).contains(&time), "START {time} not in {lo}..={hi}");
                last = time;
            }
            playback_msg::DATA => {
                let (lo, hi) = bounds(push_window.0, push_window.1);
                assert!(stamp >= last, "DATA {stamp} before {last}");
                last = stamp;
                assert!(
                    (lo..=hi).contains(&stamp),
                    "DATA {stamp} not in {lo}..={hi}"
                );
                data += 1;
            }
            _ => {}
        }
    }
}

/// No PLAYBACK LATENCY, as spice-server without video streams: a client
/// with the LATENCY cap, joining a stream or seeing one start, gets MODE,
/// START and then the DATA (spice-gtk keeps its 200 ms default, where a
/// LATENCY would make a client that honours it buffer more).
#[test]
fn no_latency_message_even_for_a_client_with_the_cap() {
    let card = Arc::new(Card::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            audio_out: Some(card.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    let sink = card.sink();
    let format = PcmFormat {
        channels: 2,
        rate: 44_100,
    };
    sink.start(format);
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let (mut s, _) = link_channel(
        &server.local_addr(),
        c.state().session_id,
        ch::PLAYBACK,
        vec![(1 << PLAYBACK_CAP_VOLUME) | (1 << PLAYBACK_CAP_LATENCY)],
        &ClientOptions::default(),
    )
    .unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    assert_eq!(read_msg(&mut s).0, playback_msg::MODE);
    assert_eq!(read_msg(&mut s).0, playback_msg::START);
    sink.frames(&tone(440.0, 44_100, 4410)).unwrap();
    assert_eq!(
        read_msg(&mut s).0,
        playback_msg::DATA,
        "DATA right after a joined START"
    );

    sink.stop();
    // The rest of the first stream's frames, then its STOP.
    while read_msg(&mut s).0 != playback_msg::STOP {}
    sink.start(format);
    assert_eq!(read_msg(&mut s).0, playback_msg::MODE);
    assert_eq!(read_msg(&mut s).0, playback_msg::START);
    sink.frames(&tone(440.0, 44_100, 4410)).unwrap();
    assert_eq!(
        read_msg(&mut s).0,
        playback_msg::DATA,
        "DATA right after a new START"
    );
}

/// With playback compression off (`--spice-playback-compression off`, as
/// QEMU's `playback-compression=off`), a client that announces Opus still
/// gets raw PCM.
#[test]
fn compression_off_sends_raw_to_an_opus_client() {
    let card = Arc::new(Card::default());
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        crate::Config {
            playback_compression: false,
            jpeg: Default::default(),
            ..config(None)
        },
        Ports {
            audio_out: Some(card.clone()),
            ..ports(&rec)
        },
    )
    .unwrap();
    let sink = card.sink();
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    let (mut s, _) = link_channel(
        &server.local_addr(),
        c.state().session_id,
        ch::PLAYBACK,
        vec![(1 << PLAYBACK_CAP_VOLUME) | (1 << PLAYBACK_CAP_OPUS)],
        &ClientOptions::default(),
    )
    .unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    while card.attached.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    sink.start(PcmFormat {
        channels: 2,
        rate: 48_000,
    });
    let (t, mode) = read_msg(&mut s);
    assert_eq!(t, playback_msg::MODE);
    assert_eq!(u16::from_le_bytes([mode[4], mode[5]]), MODE_RAW);
    assert_eq!(read_msg(&mut s).0, playback_msg::START);
    sink.frames(&tone(440.0, 48_000, 480)).unwrap();
    let (t, data) = read_msg(&mut s);
    assert_eq!(t, playback_msg::DATA);
    assert_eq!(data.len(), 4 + 1920, "one raw 10 ms frame");
}
