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

use std::time::Duration;

use images::qxl_scene;
use spicebox_tests::glib_client::LiveGlibClient;
use spicebox_tests::qxl_native::{self, Boot};
use spicebox_tests::screen::{self, Frame};
use spicebox_tests::tools::require_spice_client_glib;
use spicebox_tests::tshark::Capture;
use spicebox_tests::{spicebox, TempDir};

const STEP: Duration = Duration::from_secs(30);
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
