// The picture the qxl-native test guest draws through QXL commands, shared by
// the guest (which includes this file: no_std, no dependencies) and the
// end-to-end test (which compares client screenshots with `expected`).
//
// In drawing order: a full-screen FILL; a 32-bit bitmap COPY in one chunk; the
// same bitmap again in three chunks, clipped by two rectangles; a
// 16-bit (x1r5g5b5) and a 24-bit bitmap; a COPY_BITS of the first copy further
// down; a second FILL. Rectangles are (left, top, right, bottom).

/// The primary surface.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
pub const BACKGROUND: u32 = 0x20_3040;
pub const FILL_COLOR: u32 = 0xc0_ffee;
pub const FILL_RECT: (i32, i32, i32, i32) = (400, 200, 600, 300);
/// The 32-bit bitmap, drawn twice.
pub const B32_W: u32 = 128;
pub const B32_H: u32 = 96;
pub const COPY1_AT: (i32, i32) = (32, 32);
pub const COPY2_AT: (i32, i32) = (192, 32);
pub const COPY2_CLIPS: [(i32, i32, i32, i32); 2] = [(192, 32, 256, 128), (256, 64, 320, 96)];
/// The 16- and 24-bit bitmaps (64x64 each).
pub const SMALL: u32 = 64;
pub const B16_AT: (i32, i32) = (352, 32);
pub const B24_AT: (i32, i32) = (448, 32);
/// COPY_BITS: the first copy's area, moved down by `COPY_BITS_DY`.
pub const COPY_BITS_DY: i32 = 128;

/// 0x00RRGGBB of the 32-bit bitmap's pixel (x, y).
pub fn bitmap32(x: u32, y: u32) -> u32 {
    (x * 2) << 16 | (y * 2) << 8 | 0x80
}

/// The 16-bit bitmap's x1r5g5b5 pixel.
pub fn bitmap16(x: u32, y: u32) -> u16 {
    ((x / 2) << 10 | (y / 2) << 5 | (((x + y) / 4) & 31)) as u16
}

/// x1r5g5b5 widened to 0x00RRGGBB, each component as `v << 3 | v >> 2`.
pub fn expand555(v: u16) -> u32 {
    let c = |s: u32| {
        let v = (u32::from(v) >> s) & 31;
        v << 3 | v >> 2
    };
    c(10) << 16 | c(5) << 8 | c(0)
}

/// The 24-bit bitmap's pixel as 0x00RRGGBB (stored B, G, R).
pub fn bitmap24(x: u32, y: u32) -> u32 {
    (255 - x * 3) << 16 | (y * 4) << 8 | ((x ^ y) * 4)
}

fn inside(r: (i32, i32, i32, i32), x: i32, y: i32) -> bool {
    x >= r.0 && x < r.2 && y >= r.1 && y < r.3
}

fn area(at: (i32, i32), w: u32, h: u32) -> (i32, i32, i32, i32) {
    (at.0, at.1, at.0 + w as i32, at.1 + h as i32)
}

/// The rectangle COPY_BITS fills.
pub fn copy_bits_dst() -> (i32, i32, i32, i32) {
    let a = area(COPY1_AT, B32_W, B32_H);
    (a.0, a.1 + COPY_BITS_DY, a.2, a.3 + COPY_BITS_DY)
}

fn before_copy_bits(x: i32, y: i32) -> u32 {
    if inside(area(COPY1_AT, B32_W, B32_H), x, y) {
        return bitmap32((x - COPY1_AT.0) as u32, (y - COPY1_AT.1) as u32);
    }
    if COPY2_CLIPS.iter().any(|&c| inside(c, x, y)) {
        return bitmap32((x - COPY2_AT.0) as u32, (y - COPY2_AT.1) as u32);
    }
    if inside(area(B16_AT, SMALL, SMALL), x, y) {
        return expand555(bitmap16((x - B16_AT.0) as u32, (y - B16_AT.1) as u32));
    }
    if inside(area(B24_AT, SMALL, SMALL), x, y) {
        return bitmap24((x - B24_AT.0) as u32, (y - B24_AT.1) as u32);
    }
    BACKGROUND
}

/// 0x00RRGGBB of the finished picture at (x, y).
pub fn expected(x: u32, y: u32) -> u32 {
    let (x, y) = (x as i32, y as i32);
    if inside(FILL_RECT, x, y) {
        FILL_COLOR
    } else if inside(copy_bits_dst(), x, y) {
        before_copy_bits(x, y - COPY_BITS_DY)
    } else {
        before_copy_bits(x, y)
    }
}

/// The guest's cursor: a 32x32 ALPHA shape, hot spot (0, 0), set at
/// `CURSOR_AT` and then moved to `CURSOR_MOVED_TO`.
pub const CURSOR_SIDE: u32 = 32;
pub const CURSOR_AT: (i16, i16) = (100, 100);
pub const CURSOR_MOVED_TO: (i16, i16) = (300, 200);

/// 0xAARRGGBB of the cursor's pixel (x, y): an opaque red frame on two sides
/// and the diagonal, translucent blue elsewhere.
pub fn cursor_pixel(x: u32, y: u32) -> u32 {
    if x < 2 || y < 2 || x == y {
        0xffff_0000
    } else {
        0x4000_00ff
    }
}

/// Cursor cycle ('c' on COM1): this many SETs at CURSOR_MOVED_TO,
/// alternating the inverse shape ([`cursor_pixel_inverse`]) and the scene's
/// shape, the inverse first; the guest's QXL unique ids are 2 and 1.
pub const CURSOR_CYCLE_SETS: u32 = 24;

/// The cycle's second shape: the colours inverted, alpha kept.
pub fn cursor_pixel_inverse(x: u32, y: u32) -> u32 {
    cursor_pixel(x, y) ^ 0x00ff_ffff
}

/// Video ('v' on COM1): VIDEO_FRAMES frames of a photo-like picture that
/// changes every frame, each a 32-bit bitmap COPYed into the same box at
/// VIDEO_FPS, as a video player's frames reach the qxl driver.
pub const VIDEO_W: u32 = 256;
pub const VIDEO_H: u32 = 192;
pub const VIDEO_AT: (i32, i32) = (32, 264);
pub const VIDEO_FPS: u64 = 25;
pub const VIDEO_FRAMES: u32 = 250;

/// 0x00RRGGBB of pixel (x, y) of video frame `t`: drifting triangle-wave
/// gradients (soft changes everywhere, no edges) with a little noise, as a
/// camera picture has.
pub fn video_pixel(x: u32, y: u32, t: u32) -> u32 {
    let tri = |v: u32| {
        let v = v & 0x1ff;
        if v > 255 {
            511 - v
        } else {
            v
        }
    };
    let noise = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ t.wrapping_mul(83_492_791)) >> 30;
    let r = tri(x * 2 + t * 3) ^ noise;
    let g = tri(y * 2 + x / 4 + t * 5) ^ noise;
    let b = tri(x + y + t * 2);
    r << 16 | g << 8 | b
}

/// Video under a dialog ('w' on COM1): the video as 'v', and from frame
/// DIALOG_FROM on a DIALOG_W x DIALOG_H dialog (a body FILL, then a title
/// bar FILL over its top) drawn after each frame over the box's top-right
/// corner, from frame DIALOG_MOVES_AT on over its bottom-left one, as a
/// window manager redraws a window the player's frames go under.
pub const DIALOG_W: u32 = 64;
pub const DIALOG_H: u32 = 48;
pub const DIALOG_TITLE_H: u32 = 12;
pub const DIALOG_FROM: u32 = 50;
pub const DIALOG_MOVES_AT: u32 = 100;
pub const DIALOG_BODY: u32 = 0xd4_d0c8;
pub const DIALOG_TITLE: u32 = 0x0a_246a;
/// The dialog's inset from the box's edges.
const DIALOG_INSET: i32 = 8;

/// The dialog's rectangle (left, top, right, bottom) after frame `t`, if
/// it is shown then.
pub fn dialog_rect(t: u32) -> Option<(i32, i32, i32, i32)> {
    let (w, h) = (DIALOG_W as i32, DIALOG_H as i32);
    let (bx, by) = VIDEO_AT;
    let (x, y) = if t < DIALOG_FROM {
        return None;
    } else if t < DIALOG_MOVES_AT {
        (bx + VIDEO_W as i32 - w - DIALOG_INSET, by + DIALOG_INSET)
    } else {
        (bx + DIALOG_INSET, by + VIDEO_H as i32 - h - DIALOG_INSET)
    };
    Some((x, y, x + w, y + h))
}

/// The dialog's title bar in `dialog`'s rectangle.
pub fn dialog_title(dialog: (i32, i32, i32, i32)) -> (i32, i32, i32, i32) {
    (dialog.0, dialog.1, dialog.2, dialog.1 + DIALOG_TITLE_H as i32)
}

/// 0x00RRGGBB of the dialog's pixel (x, y), relative to its corner.
pub fn dialog_pixel(_x: u32, y: u32) -> u32 {
    if y < DIALOG_TITLE_H {
        DIALOG_TITLE
    } else {
        DIALOG_BODY
    }
}
