//! Stream detection on synthetic update patterns, client sync, frames
//! decoded by a standard JPEG decoder.

use super::super::stream_rate::{start_quality, QUALITIES};
use super::super::stream_wire::StreamReport;
use super::*;

const BOX: Rect = Rect::new(64, 32, 128, 96);

/// A photo-like picture that changes with `t` (smooth gradients).
fn photo_frame(w: u32, h: u32, t: u32) -> Frame {
    let pixels = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            // Triangle waves: smooth, no wrap-around edges.
            let tri = |v: u32| {
                if v & 0x100 != 0 {
                    255 - (v & 0xff)
                } else {
                    v & 0xff
                }
            };
            let r = tri(x + t);
            let g = tri(y * 2 + t);
            let b = tri((x + y) / 2);
            r << 16 | g << 8 | b
        })
        .collect();
    Frame {
        width: w,
        height: h,
        pixels,
    }
}

fn flat_frame(w: u32, h: u32) -> Frame {
    Frame {
        width: w,
        height: h,
        pixels: vec![0x00ff_ffff; (w * h) as usize],
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` updates repainting `b` every 40 ms from `t0`; the frames reported.
fn run(d: &mut Detector, t0: Instant, n: u32, b: Rect, frame: &Frame) -> Vec<usize> {
    (0..n)
        .filter(|i| {
            let now = t0 + ms(40 * u64::from(*i));
            !d.update(now, frame, &[b], &[b]).is_empty()
        })
        .map(|i| i as usize)
        .collect()
}

#[test]
fn a_photo_like_box_redrawn_steadily_becomes_a_stream_on_its_20th_frame() {
    let mut d = Detector::new(StreamingVideo::Filter);
    let t0 = Instant::now();
    let f = photo_frame(320, 200, 0);
    let frames = run(&mut d, t0, 30, BOX, &f);
    assert_eq!(frames, (19..30).collect::<Vec<_>>());
    let s = &d.streams()[0];
    assert_eq!((s.id, s.rect, s.seq), (0, BOX, 11));
    // Still for a second: it ends.
    let last = t0 + ms(40 * 29);
    assert_eq!(d.deadline(), Some(last + TIMEOUT));
    d.expire(last + TIMEOUT - ms(1));
    assert_eq!(d.streams().len(), 1);
    d.expire(last + TIMEOUT);
    assert!(d.streams().is_empty());
}

#[test]
fn small_slow_flat_or_moving_boxes_do_not_stream() {
    let t0 = Instant::now();
    let photo = photo_frame(320, 200, 0);
    // Under 96x96 pixels.
    let mut d = Detector::new(StreamingVideo::All);
    assert!(run(&mut d, t0, 40, Rect::new(0, 0, 95, 96), &photo).is_empty());
    // Too slow: 250 ms between redraws.
    let mut d = Detector::new(StreamingVideo::Filter);
    for i in 0..40u64 {
        assert!(d
            .update(t0 + ms(250 * i), &photo, &[BOX], &[BOX])
            .is_empty());
    }
    // Flat UI under Filter, but streamed under All.
    let flat = flat_frame(320, 200);
    let mut d = Detector::new(StreamingVideo::Filter);
    assert!(run(&mut d, t0, 40, BOX, &flat).is_empty());
    let mut d = Detector::new(StreamingVideo::All);
    assert_eq!(run(&mut d, t0, 21, BOX, &flat), vec![19, 20]);
    // A box that moves each time is never the same box.
    let mut d = Detector::new(StreamingVideo::Filter);
    for i in 0..40u32 {
        let b = Rect::new(i, 0, 128, 96);
        assert!(d
            .update(t0 + ms(40 * u64::from(i)), &photo, &[b], &[b])
            .is_empty());
    }
    // Off: nothing.
    let mut d = Detector::new(StreamingVideo::Off);
    assert!(run(&mut d, t0, 40, BOX, &photo).is_empty());
    // A box that does not fit the frame.
    let mut d = Detector::new(StreamingVideo::All);
    assert!(run(&mut d, t0, 40, Rect::new(300, 0, 128, 96), &photo).is_empty());
}

#[test]
fn a_fifth_photo_like_frames_is_enough() {
    let t0 = Instant::now();
    let (photo, flat) = (photo_frame(320, 200, 0), flat_frame(320, 200));
    let mut d = Detector::new(StreamingVideo::Filter);
    let mut started = None;
    for i in 0..40u32 {
        let f = if i % 5 == 0 { &photo } else { &flat };
        if !d
            .update(t0 + ms(40 * u64::from(i)), f, &[BOX], &[BOX])
            .is_empty()
        {
            started.get_or_insert(i);
        }
    }
    assert_eq!(started, Some(19));
}

#[test]
fn other_draws_clip_a_stream_and_too_much_of_them_end_it() {
    let t0 = Instant::now();
    let f = photo_frame(320, 200, 0);
    let mut d = Detector::new(StreamingVideo::Filter);
    run(&mut d, t0, 20, BOX, &f);
    assert_eq!(d.streams().len(), 1);
    // A small overlay (a tooltip) over the box's corner: clipped.
    let tip = Rect::new(50, 20, 40, 30);
    let now = t0 + ms(800);
    assert!(d.update(now, &f, &[], &[tip]).is_empty());
    let s = &d.streams()[0];
    assert_eq!(s.clipped, vec![Rect::new(64, 32, 26, 18)]);
    assert_eq!(s.clip_gen, 1);
    let rects = s.clip_rects().unwrap();
    assert_eq!(
        rects.iter().map(Rect::area).sum::<u64>(),
        BOX.area() - 26 * 18
    );
    assert!(rects.iter().all(|r| BOX.contains(r) && !r.intersects(&tip)));
    // The same area again: no change.
    d.update(now, &f, &[], &[tip]);
    assert_eq!(d.streams()[0].clip_gen, 1);
    // The tip drawn again after each frame: the clip stays as it was.
    let (frame, tip_again) = ([BOX], [BOX, tip]);
    assert_eq!(d.update(now + ms(40), &f, &frame, &tip_again), vec![BOX]);
    assert_eq!(d.streams()[0].clip_gen, 1);
    assert_eq!(d.streams()[0].clipped, vec![Rect::new(64, 32, 26, 18)]);
    // The tip moved to the other corner: the new frame's clip is that
    // corner only (the old one is the frame's again).
    let moved = Rect::new(180, 110, 30, 30);
    let now = now + ms(80);
    assert_eq!(d.update(now, &f, &[BOX], &[BOX, moved]), vec![BOX]);
    let s = &d.streams()[0];
    assert_eq!(s.clipped, vec![Rect::new(180, 110, 12, 18)]);
    assert_eq!(s.clip_gen, 2);
    // The tip drawn before the frame: under it, no clip.
    let now = now + ms(40);
    assert_eq!(d.update(now, &f, &[BOX], &[moved, BOX]), vec![BOX]);
    assert_eq!(d.streams()[0].clip_rects(), None);
    assert_eq!(d.streams()[0].clip_gen, 3);
    // Again after it.
    assert_eq!(d.update(now + ms(40), &f, &[BOX], &[BOX, moved]), vec![BOX]);
    assert_eq!(d.streams()[0].clip_gen, 4);
    // A frame with nothing over it: no clip.
    let now = now + ms(40);
    assert_eq!(d.update(now + ms(40), &f, &[BOX], &[BOX]), vec![BOX]);
    assert_eq!(d.streams()[0].clip_rects(), None);
    assert_eq!(d.streams()[0].clip_gen, 5);
    // A window over most of it: the stream ends.
    let window = Rect::new(0, 0, 150, 200);
    d.update(now + ms(80), &f, &[], &[window]);
    assert!(d.streams().is_empty());
}

#[test]
fn subtract_leaves_disjoint_rectangles_covering_the_rest() {
    let r = Rect::new(10, 10, 20, 20);
    let holes = [
        Rect::new(0, 0, 15, 15),
        Rect::new(20, 20, 5, 30),
        Rect::new(12, 12, 2, 2),
    ];
    let out = subtract(&r, &holes);
    for (i, a) in out.iter().enumerate() {
        assert!(r.contains(a));
        assert!(holes.iter().all(|h| !a.intersects(h)));
        assert!(out[i + 1..].iter().all(|b| !a.intersects(b)));
    }
    let covered: u64 = out.iter().map(Rect::area).sum();
    assert_eq!(covered, 400 - 25 - 50);
    assert_eq!(subtract(&r, &[]), vec![r]);
    assert!(subtract(&r, &[Rect::new(0, 0, 100, 100)]).is_empty());
}

#[test]
fn copy_bits_reading_a_stream_are_found() {
    let f = photo_frame(320, 200, 0);
    let mut d = Detector::new(StreamingVideo::Filter);
    run(&mut d, Instant::now(), 20, BOX, &f);
    let from = |x, y| {
        Draw::CopyBits(crate::BitsCopy {
            rect: Rect::new(0, 150, 20, 20),
            src_x: x,
            src_y: y,
        })
    };
    assert!(reads_stream(&from(70, 40), d.streams()));
    assert!(!reads_stream(&from(0, 0), d.streams()));
}

fn stream_at(id: u32, unique: u64, seq: u64) -> Stream {
    Stream {
        id,
        unique,
        rect: BOX,
        seq,
        last: Instant::now(),
        clipped: Vec::new(),
        clip_gen: 0,
    }
}

#[test]
fn a_client_is_brought_to_the_heads_streams() {
    let now = Instant::now();
    let f = photo_frame(320, 200, 3);
    let mut c = ClientStreams::new(true, (now, 5000));
    let s = stream_at(0, 1, 1);
    let steps = c.sync(std::slice::from_ref(&s), &f, now, true, false);
    assert!(matches!(
        steps[0],
        Step::Create {
            id: 0,
            rect: BOX,
            clip: None
        }
    ));
    match &steps[1] {
        Step::Frame {
            id: 0,
            rect,
            pixels,
            skipped: 0,
        } => {
            assert_eq!(*rect, BOX);
            assert_eq!(*pixels, extract(&f, &BOX));
        }
        _ => panic!("no frame"),
    }
    assert_eq!(steps.len(), 2);
    // Nothing new: nothing due.
    assert!(c
        .sync(std::slice::from_ref(&s), &f, now, true, false)
        .is_empty());
    // A clip and a frame, three frames after the last one sent: those
    // three are dropped.
    let mut s2 = s.clone();
    s2.seq = 5;
    s2.clipped = vec![Rect::new(64, 32, 10, 10)];
    s2.clip_gen = 1;
    let steps = c.sync(&[s2.clone()], &f, now, true, false);
    assert!(matches!(&steps[0], Step::Clip { id: 0, clip: Some(r) } if r.len() == 2));
    assert!(matches!(&steps[1], Step::Frame { skipped: 3, .. }));
    // A newer frame held back by pacing, then the stream ends: unsent.
    c.fake_frame(0, 5000, 2000, now);
    s2.seq = 6;
    let later = now + Duration::from_micros(10);
    assert!(c.sync(&[s2.clone()], &f, later, true, false).is_empty());
    // The stream replaced by another with the same id: destroy, create.
    let s3 = stream_at(0, 2, 1);
    let steps = c.sync(std::slice::from_ref(&s3), &f, later, true, false);
    assert!(matches!(
        steps[0],
        Step::Destroy {
            id: 0,
            rect: BOX,
            unsent: 1
        }
    ));
    assert!(matches!(steps[1], Step::Create { id: 0, .. }));
    // Streams off for this client: it ends.
    let steps = c.sync(&[s3], &f, now, false, false);
    assert!(matches!(steps[..], [Step::Destroy { id: 0, .. }]));
    assert!(!c.forget_all());
}

#[test]
fn a_stream_frame_is_a_jpeg_a_standard_decoder_reads_close_to_the_picture() {
    let f = photo_frame(320, 200, 7);
    let pixels = extract(&f, &BOX);
    let rate = Rate::new(Instant::now(), false);
    let jpeg = jpeg_rgb32_quality(BOX.width, BOX.height, &pixels, rate.quality());
    let body = stream_data(2, 1234, &jpeg);
    // The frame is what follows id, time and size.
    assert_eq!(
        u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize,
        jpeg.len()
    );
    let mut dec = jpeg_decoder::Decoder::new(&body[12..]);
    let rgb = dec.decode().unwrap();
    let info = dec.info().unwrap();
    assert_eq!(
        (u32::from(info.width), u32::from(info.height)),
        (BOX.width, BOX.height)
    );
    let psnr = psnr_rgb(&pixels, &rgb);
    assert!(psnr > 30.0, "{psnr}");
}

/// PSNR (dB) of decoded RGB bytes against xRGB pixels.
fn psnr_rgb(pixels: &[u32], rgb: &[u8]) -> f64 {
    let mut sum = 0f64;
    for (i, p) in pixels.iter().enumerate() {
        for (k, shift) in [16, 8, 0].into_iter().enumerate() {
            let d = f64::from((p >> shift) & 0xff) - f64::from(rgb[i * 3 + k]);
            sum += d * d;
        }
    }
    let mse = sum / (pixels.len() * 3) as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

#[test]
fn reports_move_quality_and_the_frame_rate_cap() {
    let now = Instant::now();
    let mut r = Rate::new(now, false);
    assert_eq!(r.quality(), 60);
    let report = |frames, drops| StreamReport {
        stream_id: 0,
        unique_id: 1,
        start_mm: 0,
        end_mm: 200,
        frames,
        drops,
        last_delay: 5,
    };
    r.report(&report(5, 2));
    assert_eq!((r.quality(), r.fps_cap), (50, 22.5));
    r.report(&report(5, 0));
    r.report(&report(5, 0));
    assert!(r.fps_cap > 22.5);
    // 20 kB frames on a 2 Mbit/s link: 10 frames/s fit.
    r.sent(now, 20_000, 2e6);
    assert!((r.fps(2e6) - 10.0).abs() < 0.01);
    // Under 10 frames/s: quality steps down, once a second at most.
    r.sent(now + ms(1001), 30_000, 2e6);
    assert_eq!(r.quality(), 40);
    r.sent(now + ms(1002), 30_000, 2e6);
    assert_eq!(r.quality(), 40);
}

#[test]
fn quality_rises_with_room_only_to_the_links_ceiling() {
    let now = Instant::now();
    let clean = StreamReport {
        stream_id: 0,
        unique_id: 1,
        start_mm: 0,
        end_mm: 200,
        frames: 5,
        drops: 0,
        last_delay: 50,
    };
    for slow in [false, true] {
        let mut r = Rate::new(now, slow);
        assert_eq!(r.quality(), start_quality(slow));
        // Late drops step it down (not below the lowest), clean reports and
        // room bring it back, not past the link's ceiling.
        r.report(&StreamReport { drops: 3, ..clean });
        if !slow {
            assert!(r.quality() < start_quality(false));
        }
        r.report(&clean);
        // 2 kB frames on a 100 Mbit/s link: room for thousands a second.
        for s in 1..10 {
            r.sent(now + ms(1001 * s), 2_000, 100e6);
        }
        let top = if slow {
            start_quality(true)
        } else {
            QUALITIES[QUALITIES.len() - 1]
        };
        assert_eq!(r.quality(), top, "slow {slow}");
        assert!(top <= 70);
    }
}

#[test]
fn every_stream_quality_keeps_camera_like_frames_above_the_e2e_bound() {
    // The e2e video test allows a lossy picture 28 dB (spice_video.rs);
    // the sample photo has sensor noise of up to 6 levels per channel.
    let pixels = crate::image::samples::photo(BOX.width, BOX.height, 3);
    for q in QUALITIES {
        let jpeg = jpeg_rgb32_quality(BOX.width, BOX.height, &pixels, q);
        let rgb = jpeg_decoder::Decoder::new(&jpeg[..]).decode().unwrap();
        let psnr = psnr_rgb(&pixels, &rgb);
        assert!(psnr > 28.0, "quality {q}: {psnr:.1} dB");
    }
}

#[test]
fn hot_candidates_may_go_lossy_and_go_lossless_if_no_stream_takes_them() {
    let t0 = Instant::now();
    let f = photo_frame(320, 200, 0);
    let mut d = Detector::new(StreamingVideo::Filter);
    run(&mut d, t0, HOT_FRAMES - 1, BOX, &f);
    assert!(d.hot().is_empty());
    run(&mut d, t0 + ms(40 * u64::from(HOT_FRAMES - 1)), 1, BOX, &f);
    assert_eq!(d.hot(), vec![BOX]);
    let mut c = ClientStreams::new(false, (t0, 1000));
    // Streams off for the client: nothing is hot for it.
    assert!(c.settle_candidates(d.hot(), d.streams(), false).is_empty());
    assert!(!c.lossy_candidate(&BOX));
    assert!(c.settle_candidates(d.hot(), d.streams(), true).is_empty());
    assert!(!c.lossy_candidate(&Rect::new(0, 0, 128, 96)));
    assert!(c.lossy_candidate(&BOX));
    assert!(c.candidates_pending());
    // Still hot: nothing to settle. The candidate goes cold: the box is due.
    assert!(c.settle_candidates(d.hot(), d.streams(), true).is_empty());
    d.expire(t0 + ms(40 * u64::from(HOT_FRAMES)) + DETECT_GAP + ms(1));
    assert_eq!(c.settle_candidates(d.hot(), d.streams(), true), vec![BOX]);
    assert!(!c.candidates_pending());
    // One that becomes a stream is left to the stream's end.
    let mut d = Detector::new(StreamingVideo::Filter);
    run(&mut d, t0, HOT_FRAMES, BOX, &f);
    c.settle_candidates(d.hot(), d.streams(), true);
    assert!(c.lossy_candidate(&BOX));
    run(&mut d, t0 + ms(200), START_FRAMES, BOX, &f);
    assert_eq!(d.streams().len(), 1);
    assert!(c.settle_candidates(d.hot(), d.streams(), true).is_empty());
    assert!(!c.candidates_pending());
}
