//! vga13: an animated mode-13h screen drawn the way a DOS game draws one.
//!
//! 1. Mode 13h (320x200, 256 colours, chain-4) programmed through the VGA
//!    registers from CPL 3 (the loader has left real mode, so no int 10h):
//!    misc output, sequencer under synchronous reset, CRTC (unprotected
//!    first), graphics controller, attribute controller, then a 256-entry
//!    DAC palette of gradients.
//! 2. A background of diagonal palette bands stored into 0xA0000 (one
//!    8-byte `mov` at a time, as `rep movsd`-style blits do).
//! 3. The animation: FRAMES frames at FPS, each redrawing the box that
//!    covers the sprite's old and new positions (background where the sprite
//!    left, the sprite where it is) and a frame counter in block digits at the
//!    top left. Positions depend only on the frame number, so the last frame
//!    is the same picture on every machine.
//!
//! Prints `vga13 frames=.. late=.. ms=.. draw_us=..` (late: frames started
//! more than a period after they were due; draw_us: guest time spent
//! storing pixels per frame, averaged), then `VGA13-ANIM-DONE`, and waits for
//! a byte on COM1 (the host takes screendumps meanwhile): `a` animates again
//! (the benchmark), anything else ends the test with `SPICEBOX-VGA13-OK`.
#![no_std]
#![no_main]

use core::ptr::write_volatile;
use core::time::Duration;

use guest_rt::{port, println, serial, time};

guest_rt::guest!("VGA13", main);

const WIDTH: usize = 320;
const HEIGHT: usize = 200;
const WINDOW: u64 = 0xa_0000;
const FPS: u64 = 60;
/// images::VGA13_FRAMES: keep them equal.
const FRAMES: u64 = 240;
const SPRITE: usize = 32;
/// Frame counter: DIGITS digits of a 3x5 font, each cell SCALE pixels.
const DIGITS: usize = 5;
const SCALE: usize = 4;
const COUNTER_X: usize = 8;
const COUNTER_Y: usize = 8;

const MISC: u8 = 0x63;
const SEQ: [u8; 5] = [0x03, 0x01, 0x0f, 0x00, 0x0e];
const CRTC: [u8; 25] = [
    0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x9c, 0x0e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
];
const GRAPHICS: [u8; 9] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff];
const ATTRIBUTE: [u8; 21] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x41, 0x00, 0x0f, 0x00, 0x00,
];

/// 3x5 digits, one row per 3 low bits (bit 2 = left column).
const FONT: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];
const COUNTER_BG: u8 = 0;
const COUNTER_FG: u8 = 255;

fn set_mode_13h() {
    port::outb(0x3c2, MISC);
    // Sequencer: synchronous reset while the clocking changes.
    port::outw(0x3c4, 0x0100);
    for (i, &v) in SEQ.iter().enumerate().skip(1) {
        port::outw(0x3c4, u16::from(v) << 8 | i as u16);
    }
    port::outw(0x3c4, u16::from(SEQ[0]) << 8);
    // CR11 bit 7 write-protects CR0-CR7: clear it first.
    port::outw(0x3d4, u16::from(CRTC[0x11] & 0x7f) << 8 | 0x11);
    for (i, &v) in CRTC.iter().enumerate() {
        port::outw(0x3d4, u16::from(v) << 8 | i as u16);
    }
    for (i, &v) in GRAPHICS.iter().enumerate() {
        port::outw(0x3ce, u16::from(v) << 8 | i as u16);
    }
    // Reading input status 1 puts the attribute flip-flop on "index".
    port::inb(0x3da);
    for (i, &v) in ATTRIBUTE.iter().enumerate() {
        port::outb(0x3c0, i as u8);
        port::outb(0x3c0, v);
    }
    // Index bit 5: the palette back to the display (screen on).
    port::outb(0x3c0, 0x20);
    port::outb(0x3c8, 0);
    for i in 0..=255u8 {
        for c in palette(i) {
            port::outb(0x3c9, c);
        }
    }
}

/// 6-bit R, G, B: four 64-step ramps (red, green, blue, grey).
fn palette(i: u8) -> [u8; 3] {
    let v = i & 63;
    match i >> 6 {
        0 => [v, v / 4, 63 - v],
        1 => [v / 2, v, 32],
        2 => [63 - v, v / 3, v],
        _ => [v, v, v],
    }
}

fn background(x: usize, y: usize) -> u8 {
    ((x / 4 + y / 2) % 192) as u8
}

fn sprite_pixel(x: usize, y: usize) -> u8 {
    let (dx, dy) = (x as i32 - 16, y as i32 - 16);
    if dx * dx + dy * dy <= 15 * 15 {
        192 + ((dx + dy + 32) as u8 & 63)
    } else {
        254
    }
}

/// Sprite position at frame `f`: bouncing inside the screen, a few pixels a
/// frame, a pure function of `f`.
fn position(f: u64) -> (usize, usize) {
    fn bounce(t: u64, span: u64) -> usize {
        let p = t % (2 * span);
        (if p < span { p } else { 2 * span - p }) as usize
    }
    let x = bounce(f * 3, (WIDTH - SPRITE) as u64);
    let y = bounce(f * 2 + 40, (HEIGHT - SPRITE) as u64);
    (x, y)
}

/// Stores 8 pixels at `x` (a multiple of 8) of row `y`.
fn store8(x: usize, y: usize, px: [u8; 8]) {
    let addr = WINDOW + (y * WIDTH + x) as u64;
    // SAFETY: 0xA0000-0xAFFFF is the VGA window (identity mapped, user
    // accessible); x + 8 <= WIDTH and y < HEIGHT keep the store inside the
    // 64000 bytes mode 13h shows.
    unsafe { write_volatile(addr as *mut u64, u64::from_le_bytes(px)) };
}

fn draw_background() {
    for y in 0..HEIGHT {
        for x in (0..WIDTH).step_by(8) {
            store8(x, y, core::array::from_fn(|i| background(x + i, y)));
        }
    }
}

/// Redraws the box covering `old` and `new` sprite positions (whole 8-pixel
/// groups), then the counter showing `frame`.
fn draw_frame(old: (usize, usize), new: (usize, usize), frame: u64) {
    let x0 = old.0.min(new.0) & !7;
    let x1 = (old.0.max(new.0) + SPRITE).next_multiple_of(8).min(WIDTH);
    let y0 = old.1.min(new.1);
    let y1 = (old.1.max(new.1) + SPRITE).min(HEIGHT);
    for y in y0..y1 {
        for x in (x0..x1).step_by(8) {
            store8(
                x,
                y,
                core::array::from_fn(|i| {
                    let px = x + i;
                    let inside = (new.0..new.0 + SPRITE).contains(&px)
                        && (new.1..new.1 + SPRITE).contains(&y);
                    if inside {
                        sprite_pixel(px - new.0, y - new.1)
                    } else {
                        background(px, y)
                    }
                }),
            );
        }
    }
    let mut digits = [0u8; DIGITS];
    let mut n = frame;
    for d in digits.iter_mut().rev() {
        *d = (n % 10) as u8;
        n /= 10;
    }
    // Each digit is 3 cells plus a 1-cell gap: 16 pixels, two groups of 8.
    for row in 0..5 * SCALE {
        let y = COUNTER_Y + row;
        for (k, &d) in digits.iter().enumerate() {
            let bits = FONT[usize::from(d)][row / SCALE];
            for half in 0..2 {
                let x = COUNTER_X + k * 16 + half * 8;
                store8(
                    x,
                    y,
                    core::array::from_fn(|i| {
                        let cell = (half * 8 + i) / SCALE;
                        if cell < 3 && bits & (4 >> cell) != 0 {
                            COUNTER_FG
                        } else {
                            COUNTER_BG
                        }
                    }),
                );
            }
        }
    }
}

/// FRAMES frames at FPS (a late frame is drawn at once, never skipped),
/// starting over at frame 0 from wherever the sprite is (`pos`).
fn animate(pos: &mut (usize, usize)) {
    let period = 1_000_000_000 / FPS;
    draw_frame(*pos, position(0), 0);
    *pos = position(0);
    let start = time::now_ns();
    let (mut late, mut drawing) = (0u64, 0u64);
    for f in 1..=FRAMES {
        let due = start + f * period;
        let now = time::now_ns();
        if now > due + period {
            late += 1;
        }
        while time::now_ns() < due {
            core::hint::spin_loop();
        }
        let t = time::Stopwatch::start();
        let next = position(f);
        draw_frame(*pos, next, f);
        drawing += t.elapsed_ns();
        *pos = next;
    }
    let ms = (time::now_ns() - start) / 1_000_000;
    println!(
        "vga13 frames={FRAMES} late={late} ms={ms} draw_us={}",
        drawing / FRAMES / 1000
    );
    println!("VGA13-ANIM-DONE");
}

fn main() {
    set_mode_13h();
    let t = time::Stopwatch::start();
    draw_background();
    println!("vga13 background_us={}", t.elapsed_ns() / 1000);
    let mut pos = position(0);
    loop {
        animate(&mut pos);
        match serial::read_byte(Duration::from_secs(300)) {
            Some(b'a') => {}
            Some(_) => break,
            None => guest_rt::fail!("input", "nothing on COM1 within 300 s"),
        }
    }
}
