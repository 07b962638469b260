//! End-to-end: video streams. The qxl-native test guest plays a video ('v':
//! 250 frames of a changing photo-like 256x192 bitmap COPYed into one box
//! at 25 frames/s). With streaming-video=filter both QEMU's spice-server
//! and spicebox send it as an MJPEG stream: a tshark capture of the session
//! holds STREAM_CREATE and STREAM_DATA (spicebox's also the STREAM_DESTROY
//! once the box went still) and no malformed packet, and the picture a
//! SpiceClientGLib client that watched the video ends with matches the
//! guest's last frame: exactly on spicebox (the box is sent lossless when
//! the stream ends), within a PSNR bound on QEMU. The rest of the screen is
//! exact on both.
//!
//! Under a dialog ('w': the same video, and from frame 50 two opaque FILLs
//! drawn over a corner of the box after each frame, from frame 100 over
//! another corner), both servers clip the stream: the capture holds
//! STREAM_CLIPs with rectangles (QEMU's spice-server sets the clip anew at
//! each frame and clips it again at each dialog FILL; spicebox sends one
//! whenever the clip a frame leaves changes), the dialog ends exact on the
//! client, so does the video box on spicebox. spicebox's query-spice counts
//! as many stream frames as the capture holds STREAM_DATA messages.

use std::sync::Mutex;
use std::time::Duration;

use images::qxl_scene;
use spicebox_tests::glib_client::LiveGlibClient;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::qxl_native::{self, Boot};
use spicebox_tests::screen::{self, Frame};
use spicebox_tests::tools::require_spice_client_glib;
use spicebox_tests::tshark::Capture;
use spicebox_tests::{spicebox, TempDir};

const STEP: Duration = Duration::from_secs(30);
/// One VM at a time: the tests of this file run in parallel threads.
static ONE_VM: Mutex<()> = Mutex::new(());
// Display channel message types (spice-protocol's enums.h).
const STREAM_CREATE: u16 = 122;
const STREAM_DATA: u16 = 123;
const STREAM_CLIP: u16 = 124;
const CLIP_TYPE_RECTS: u8 = 1;
/// Lowest PSNR (dB) of the video box where the server leaves it lossy: MJPEG
/// of smooth gradients is well above 30 dB; wrong colours or a wrong box are
/// far below 20.
const MIN_PSNR: f64 = 28.0;

/// The picture after the video: the scene with the last frame in its box.
fn after_video() -> (Frame, (i32, i32, i32, i32)) {
    use qxl_scene::*;
    let mut f = Frame::new(WIDTH, HEIGHT);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            f.pixels[(y * WIDTH + x) as usize] = expected(x, y);
        }
    }
    let (bx, by) = (VIDEO_AT.0 as u32, VIDEO_AT.1 as u32);
    for y in 0..VIDEO_H {
        for x in 0..VIDEO_W {
            let p = video_pixel(x, y, VIDEO_FRAMES - 1);
            f.pixels[((by + y) * WIDTH + bx + x) as usize] = p;
        }
    }
    let (w, h) = (VIDEO_W as i32, VIDEO_H as i32);
    (f, (VIDEO_AT.0, VIDEO_AT.1, VIDEO_AT.0 + w, VIDEO_AT.1 + h))
}

/// Lines of the decoded capture naming `what`.
fn count(decoded: &str, what: &str) -> usize {
    decoded.lines().filter(|l| l.contains(what)).count()
}

#[test]
fn video_goes_as_an_mjpeg_stream_and_ends_exact_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("spice-video");
    let (want, video_box) = after_video();
    for qemu in [true, false] {
        let name = if qemu { "qemu" } else { "spicebox" };
        let how = Boot {
            qemu,
            streaming: Some("filter"),
            ..Boot::default()
        };
        let (mut vm, port) = qxl_native::boot(spicebox!(), &dir, name, how);
        let mut capture = Capture::start(&dir, port, &format!("video-{name}"));
        let live = dir.join(&format!("live-{name}.ppm"));
        let client = LiveGlibClient::connect(port, live, name);
        vm.send(b"v");
        vm.wait_for(images::QXL_VIDEO_DONE_MARKER, Duration::from_secs(90));
        // The stream ends a second after its last frame; then the box's
        // final picture follows.
        std::thread::sleep(Duration::from_secs(3));
        let got = client.picture();
        let v = screen::judge_box(&got, &want, video_box);
        eprintln!("{name}: {v:?}");
        capture.stop();
        capture.assert_well_formed(&capture.opened_streams());
        let decoded = capture.read("spice", true);
        let (creates, data) = (
            count(&decoded, "STREAM_CREATE"),
            count(&decoded, "STREAM_DATA"),
        );
        let destroys = count(&decoded, "STREAM_DESTROY");
        eprintln!("{name}: packets with STREAM_CREATE {creates}, STREAM_DATA {data}, STREAM_DESTROY {destroys}");
        assert!(creates >= 1, "{name}: no STREAM_CREATE in the capture");
        assert!(data >= 50, "{name}: {data} packets with STREAM_DATA");
        assert_eq!(
            v.outside_wrong, 0,
            "{name}: pixels outside the video differ"
        );
        if qemu {
            assert!(
                v.psnr >= MIN_PSNR,
                "{name}: the last frame at {:.1} dB",
                v.psnr
            );
        } else {
            assert!(destroys >= 1, "spicebox: the stream never ended");
            assert_eq!(v.inside_wrong, 0, "spicebox: the last frame is not exact");
        }
        vm.send(b"q");
        vm.wait_for(images::QXL_NATIVE_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
    }
}

/// The picture after the video under the dialog: `after_video`'s with the
/// dialog where the last frame left it; and the dialog's rectangle.
fn after_dialog_video() -> (Frame, (i32, i32, i32, i32)) {
    use qxl_scene::*;
    let (mut f, _) = after_video();
    let d = dialog_rect(VIDEO_FRAMES - 1).expect("the dialog is up at the end");
    for y in d.1..d.3 {
        for x in d.0..d.2 {
            let p = dialog_pixel((x - d.0) as u32, (y - d.1) as u32);
            f.pixels[(y as u32 * WIDTH + x as u32) as usize] = p;
        }
    }
    (f, d)
}

/// Pixels of `r` (left, top, right, bottom) that differ.
fn wrong_in(got: &Frame, want: &Frame, r: (i32, i32, i32, i32)) -> usize {
    let mut n = 0;
    for y in r.1..r.3 {
        for x in r.0..r.2 {
            n += usize::from(got.pixel(x as u32, y as u32) != want.pixel(x as u32, y as u32));
        }
    }
    n
}

#[test]
fn a_dialog_over_the_video_clips_its_stream_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("spice-video-dialog");
    let (want, dialog) = after_dialog_video();
    let (_, video_box) = after_video();
    for qemu in [true, false] {
        let name = if qemu { "qemu" } else { "spicebox" };
        let sock = dir.join(&format!("qmp-{name}.sock"));
        let how = Boot {
            qemu,
            streaming: Some("filter"),
            control: (!qemu).then_some(sock.as_path()),
            ..Boot::default()
        };
        let (mut vm, port) = qxl_native::boot(spicebox!(), &dir, name, how);
        let mut qmp = (!qemu).then(|| Qmp::connect(&sock, Duration::from_secs(10)));
        let mut capture = Capture::start(&dir, port, &format!("dialog-{name}"));
        let live = dir.join(&format!("dialog-{name}.ppm"));
        let client = LiveGlibClient::connect(port, live, name);
        vm.send(b"w");
        if let Some(q) = qmp.as_mut() {
            // Mid-video (10 s long): the live stream's quality and rate.
            std::thread::sleep(Duration::from_secs(5));
            let e = q.display_channel();
            eprintln!("spicebox: mid-video query-spice display channel {e}");
            let quality = e["stream-quality"].as_u64();
            assert!(quality.is_some_and(|q| (20..=60).contains(&q)), "{e}");
            let fps = e["stream-fps"].as_f64().unwrap_or(0.0);
            assert!((5.0..=31.0).contains(&fps), "spicebox: {e}");
        }
        vm.wait_for(images::QXL_VIDEO_DONE_MARKER, Duration::from_secs(90));
        std::thread::sleep(Duration::from_secs(3));
        // While the client is connected: its channels leave with it.
        let entry = qmp.as_mut().map(Qmp::display_channel);
        let got = client.picture();
        capture.stop();
        let streams = capture.opened_streams();
        capture.assert_well_formed(&streams);
        let msgs = capture.server_messages(&streams);
        let of = |t: u16| msgs.iter().filter(|m| m.0 == t).count();
        let rect_clips = msgs
            .iter()
            .filter(|m| *m == &(STREAM_CLIP, Some(CLIP_TYPE_RECTS)))
            .count();
        let (creates, data, clips) = (of(STREAM_CREATE), of(STREAM_DATA), of(STREAM_CLIP));
        let v = screen::judge_box(&got, &want, video_box);
        let dialog_wrong = wrong_in(&got, &want, dialog);
        eprintln!(
            "{name}: STREAM_CREATE {creates}, STREAM_DATA {data}, STREAM_CLIP {clips} \
             ({rect_clips} with rectangles); {v:?}, dialog pixels wrong {dialog_wrong}"
        );
        assert!(creates >= 1, "{name}: no STREAM_CREATE in the capture");
        assert!(data >= 50, "{name}: {data} STREAM_DATA");
        assert!(rect_clips >= 1, "{name}: no STREAM_CLIP with rectangles");
        assert_eq!(
            v.outside_wrong, 0,
            "{name}: pixels outside the video differ"
        );
        assert_eq!(dialog_wrong, 0, "{name}: the dialog is not exact");
        if qemu {
            assert!(
                v.psnr >= MIN_PSNR,
                "{name}: the video box at {:.1} dB",
                v.psnr
            );
        } else {
            assert_eq!(v.inside_wrong, 0, "spicebox: the video box is not exact");
            let e = entry.expect("spicebox has QMP");
            eprintln!("spicebox: query-spice display channel {e}");
            assert_eq!(e["stream-frames"], data as u64, "spicebox: {e}");
            assert_eq!(e["streams-created"], creates as u64, "spicebox: {e}");
            assert_eq!(e["images"]["mjpeg"], data as u64, "spicebox: {e}");
            // The stream ended: no live stream is reported.
            assert!(e.get("stream-quality").is_none(), "spicebox: {e}");
            let drops = e["stream-drops"].as_u64().expect("stream-drops");
            assert!(
                data as u64 + drops <= u64::from(qxl_scene::VIDEO_FRAMES),
                "spicebox: {e}"
            );
        }
        vm.send(b"q");
        vm.wait_for(images::QXL_NATIVE_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
    }
}
