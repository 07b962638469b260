//! STROKE as spice-common's canvas draws it: the path's points (28.4 fixed)
//! rounded to pixels, Béziers flattened by recursive halving, and every
//! polyline drawn as X11's zero-width line (lines.c is miZeroLine: Bresenham
//! with the default zero-line bias, CapNotLast because Win32 cosmetic lines
//! leave out their last pixel). Line width, joins and caps are ignored, as
//! the canvas ignores them.
//!
//! Dashed (STYLED) lines: the canvas hands them to X11's wide-dash code with
//! a 1-pixel width; here the dash pattern is applied to the same Bresenham
//! pixels instead, counted along the polyline, which is close but not the
//! same rasterization.
//!
//! Guest coordinates are clamped in i64 arithmetic and each segment is
//! walked only across the area being drawn, so a line from one end of the
//! i32 range to the other costs no more than the area is wide.

use tracing::debug;

use super::qxl_canvas::{apply_rop, ropd, Area, Canvas};
use super::qxl_parse_ops::{path_flags, PathSeg, PointFix, LINE_FLAGS_START_WITH_GAP};
use super::qxl_rop3::BrushPaint;

/// Points all polylines of one stroke may hold after flattening.
pub const MAX_LINE_POINTS: usize = 1 << 20;
/// Deepest Bézier halving (2^16 pieces per curve). The canvas's own test
/// never ends for a curve whose four points coincide.
const MAX_BEZIER_DEPTH: u32 = 16;

/// canvas_base.c's fix_to_int: 28.4 to an integer, halves rounding down.
fn fix_to_int(v: i32) -> i32 {
    (v >> 4) + i32::from(v & 0xf > 8)
}

struct Lines {
    done: Vec<Vec<(i32, i32)>>,
    cur: Vec<(i32, i32)>,
    points: usize,
    full: bool,
}

impl Lines {
    fn push(&mut self, x: i32, y: i32) {
        if self.points >= MAX_LINE_POINTS {
            self.full = true;
            return;
        }
        self.points += 1;
        self.cur.push((x, y));
    }
    fn push_fix(&mut self, p: PointFix) {
        self.push(fix_to_int(p.x), fix_to_int(p.y));
    }
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.done.push(std::mem::take(&mut self.cur));
        }
    }

    /// subdivide_bezier: straight when both control points lie within half
    /// a pixel of the chord (squared, in 28.4), else halve.
    fn bezier(&mut self, p: [(i64, i64); 4], depth: u32) {
        let dot =
            |a: (i64, i64), b: (i64, i64)| (i128::from(a.0 * b.0) + i128::from(a.1 * b.1)) >> 4;
        let sub = |a: (i64, i64), b: (i64, i64)| (a.0 - b.0, a.1 - b.1);
        let (d10, d30, d23, d03) = (
            sub(p[1], p[0]),
            sub(p[3], p[0]),
            sub(p[2], p[3]),
            sub(p[0], p[3]),
        );
        let (a2, b2, c2) = (dot(d10, d10), dot(d30, d30), dot(d23, d23));
        let (ab, cb) = (dot(d10, d30), dot(d23, d03));
        let h1 = (a2 * b2 - ab * ab) >> 3;
        let h2 = (c2 * b2 - cb * cb) >> 3;
        if (h1 < b2 && h2 < b2) || depth >= MAX_BEZIER_DEPTH || self.full {
            self.push(fix_to_int(p[3].0 as i32), fix_to_int(p[3].1 as i32));
            return;
        }
        let mid = |a: (i64, i64), b: (i64, i64)| ((a.0 + b.0) / 2, (a.1 + b.1) / 2);
        let (p01, p12, p23) = (mid(p[0], p[1]), mid(p[1], p[2]), mid(p[2], p[3]));
        let (p012, p123) = (mid(p01, p12), mid(p12, p23));
        let p0123 = mid(p012, p123);
        self.bezier([p[0], p01, p012, p0123], depth + 1);
        self.bezier([p0123, p123, p23, p[3]], depth + 1);
    }
}

/// The polylines canvas_draw_stroke hands to miZeroLine, in order.
pub(super) fn flatten(path: &[PathSeg]) -> Vec<Vec<(i32, i32)>> {
    let mut l = Lines {
        done: Vec::new(),
        cur: Vec::new(),
        points: 0,
        full: false,
    };
    let fix = |p: &PointFix| (i64::from(p.x), i64::from(p.y));
    for seg in path {
        let mut pts = &seg.points[..];
        if seg.flags & path_flags::BEGIN != 0 {
            l.flush();
            let Some((first, rest)) = pts.split_first() else {
                continue;
            };
            l.push_fix(*first);
            pts = rest;
        }
        if seg.flags & path_flags::BEZIER != 0 {
            if pts.len() % 3 != 0 {
                // The canvas gives up on the whole stroke here, keeping what
                // it has drawn so far.
                debug!("qxl: bezier segment of {} points", pts.len());
                return l.done;
            }
            for c in pts.chunks_exact(3) {
                let Some(&(x, y)) = l.cur.last() else {
                    break;
                };
                let start = (i64::from(x) << 4, i64::from(y) << 4);
                l.bezier([start, fix(&c[0]), fix(&c[1]), fix(&c[2])], 0);
            }
        } else {
            for p in pts {
                l.push_fix(*p);
            }
        }
        if seg.flags & path_flags::END != 0 {
            if seg.flags & path_flags::CLOSE != 0 {
                if let Some(&(x, y)) = l.cur.first() {
                    l.push(x, y);
                }
            }
            l.flush();
        }
        if l.full {
            debug!("qxl: stroke cut at {MAX_LINE_POINTS} points");
            break;
        }
    }
    l.flush();
    l.done
}

/// miZeroLine's default bias: octants 2, 3, 4 and 5 round their error down.
const ZERO_LINE_BIAS: u32 = 1 << 3 | 1 << 7 | 1 << 6 | 1 << 4;

/// Every pixel of the zero-width line from `p1` to `p2` but `p2`, walked in
/// drawing order as (step, x, y), for the steps that land in `a`.
fn line(p1: (i32, i32), p2: (i32, i32), a: Area, mut f: impl FnMut(i64, u32, u32)) {
    let (x1, y1) = (i64::from(p1.0), i64::from(p1.1));
    let (dx, dy) = (i64::from(p2.0) - x1, i64::from(p2.1) - y1);
    let (adx, ady) = (dx.abs(), dy.abs());
    let sx = if dx < 0 { -1 } else { 1 };
    let sy = if dy < 0 { -1 } else { 1 };
    let mut octant = 0u32;
    if dx < 0 {
        octant |= 4;
    }
    if dy < 0 {
        octant |= 2;
    }
    let x_major = adx > ady;
    if !x_major {
        octant |= 1;
    }
    let fix = i64::from(ZERO_LINE_BIAS >> octant & 1);
    // Major/minor axes: pixel k is at major + k*s_major and minor +
    // m_k*s_minor, m_k = floor((E + 2*minor_len*k) / (2*major_len)) + 1 with
    // E = -major_len - fix: the closed form of the Bresenham loop.
    let (maj0, min0, maj_len, min_len, s_maj, s_min, maj_lo, maj_hi, min_lo, min_hi) = if x_major {
        (x1, y1, adx, ady, sx, sy, a.left, a.right, a.top, a.bottom)
    } else {
        (y1, x1, ady, adx, sy, sx, a.top, a.bottom, a.left, a.right)
    };
    if maj_len == 0 {
        return;
    }
    // Steps k in [0, maj_len) whose major coordinate is inside the area.
    let (lo, hi) = (i64::from(maj_lo), i64::from(maj_hi) - 1);
    let (k0, k1) = if s_maj > 0 {
        (lo - maj0, hi - maj0)
    } else {
        (maj0 - hi, maj0 - lo)
    };
    let (k0, k1) = (k0.max(0), k1.min(maj_len - 1));
    let e = -maj_len - fix;
    for k in k0..=k1 {
        let m = (e + 2 * min_len * k).div_euclid(2 * maj_len) + 1;
        let minor = min0 + m * s_min;
        if minor < i64::from(min_lo) || minor >= i64::from(min_hi) {
            continue;
        }
        let major = maj0 + k * s_maj;
        let (x, y) = if x_major {
            (major, minor)
        } else {
            (minor, major)
        };
        f(k, x as u32, y as u32);
    }
}

/// A STROKE ready to draw.
pub(super) struct StrokePaint {
    pub lines: Vec<Vec<(i32, i32)>>,
    /// Dash lengths in pixels and the starting offset into them.
    pub dashes: Option<(Vec<i64>, i64)>,
    pub brush: BrushPaint,
    pub rop: u16,
}

impl StrokePaint {
    /// The dash pattern of a STYLED line (None when it would draw nothing
    /// different from a solid one).
    pub(super) fn dashes(flags: u8, style: &[i32]) -> Option<(Vec<i64>, i64)> {
        let mut d: Vec<i64> = style.iter().map(|s| i64::from(fix_to_int(*s))).collect();
        if d.is_empty() || d.iter().any(|v| *v < 0) || d.iter().sum::<i64>() == 0 {
            return None;
        }
        let mut offset = 0;
        if flags & LINE_FLAGS_START_WITH_GAP != 0 {
            d.rotate_left(1);
            offset = d[0];
        }
        Some((d, offset))
    }
}

/// Is pixel `pos` along a dashed polyline in an "on" dash?
fn dash_on(dashes: &[i64], pos: i64) -> bool {
    let total: i64 = dashes.iter().sum();
    let mut p = pos.rem_euclid(total.max(1));
    for (i, d) in dashes.iter().enumerate() {
        if p < *d {
            return i.is_multiple_of(2);
        }
        p -= d;
    }
    false
}

pub(super) fn paint_stroke(canvas: &mut Canvas, a: Area, s: &StrokePaint) {
    for poly in &s.lines {
        let mut along = s.dashes.as_ref().map_or(0, |d| d.1);
        for w in poly.windows(2) {
            line(w[0], w[1], a, |k, x, y| {
                if let Some((d, _)) = &s.dashes {
                    if !dash_on(d, along + k) {
                        return;
                    }
                }
                let Some(p) = s.brush.at(i64::from(x), i64::from(y)) else {
                    return;
                };
                canvas.update(x, y, |old| {
                    Some(apply_rop(
                        s.rop,
                        ropd::INVERS_BRUSH,
                        ropd::INVERS_DEST,
                        p,
                        old,
                    ))
                });
            });
            let (dx, dy) = (
                (i64::from(w[1].0) - i64::from(w[0].0)).abs(),
                (i64::from(w[1].1) - i64::from(w[0].1)).abs(),
            );
            along += dx.max(dy);
        }
    }
    canvas.mark_area(a);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(w: u32, h: u32) -> Area {
        Area {
            left: 0,
            top: 0,
            right: w,
            bottom: h,
        }
    }

    fn pixels(p1: (i32, i32), p2: (i32, i32), a: Area) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        line(p1, p2, a, |_, x, y| v.push((x, y)));
        v
    }

    /// The Bresenham loop of miZeroLine, written out, for comparison.
    fn reference(p1: (i32, i32), p2: (i32, i32)) -> Vec<(i64, i64)> {
        let (x1, y1, x2, y2) = (
            i64::from(p1.0),
            i64::from(p1.1),
            i64::from(p2.0),
            i64::from(p2.1),
        );
        let (mut adx, mut ady) = (x2 - x1, y2 - y1);
        let (mut sdx, mut sdy, mut octant) = (1, 1, 0u32);
        if adx < 0 {
            adx = -adx;
            sdx = -1;
            octant |= 4;
        }
        if ady < 0 {
            ady = -ady;
            sdy = -1;
            octant |= 2;
        }
        let mut out = Vec::new();
        let (mut x, mut y) = (x1, y1);
        if adx > ady {
            let e1 = ady << 1;
            let e2 = e1 - (adx << 1);
            let mut e = e1 - adx - i64::from(ZERO_LINE_BIAS >> octant & 1);
            let e3 = e2 - e1;
            e -= e1;
            for _ in 0..adx {
                out.push((x, y));
                e += e1;
                if e >= 0 {
                    y += sdy;
                    e += e3;
                }
                x += sdx;
            }
        } else {
            octant |= 1;
            let e1 = adx << 1;
            let e2 = e1 - (ady << 1);
            let mut e = e1 - ady - i64::from(ZERO_LINE_BIAS >> octant & 1);
            let e3 = e2 - e1;
            e -= e1;
            for _ in 0..ady {
                out.push((x, y));
                e += e1;
                if e >= 0 {
                    x += sdx;
                    e += e3;
                }
                y += sdy;
            }
        }
        out
    }

    #[test]
    fn closed_form_matches_the_bresenham_loop_in_every_octant() {
        let a = all(64, 64);
        for (ex, ey) in [
            (60, 7),
            (7, 60),
            (3, 50),
            (50, 50),
            (50, 49),
            (49, 50),
            (32, 2),
            (0, 40),
            (40, 0),
            (32, 32),
        ] {
            for (x2, y2) in [(ex, ey), (64 - ex, ey), (ex, 64 - ey), (64 - ex, 64 - ey)] {
                for start in [(0, 0), (63, 63), (0, 63), (63, 0), (32, 31)] {
                    let want: Vec<(u32, u32)> = reference(start, (x2, y2))
                        .into_iter()
                        .filter(|(x, y)| (0..64).contains(x) && (0..64).contains(y))
                        .map(|(x, y)| (x as u32, y as u32))
                        .collect();
                    assert_eq!(pixels(start, (x2, y2), a), want, "{start:?} -> {x2},{y2}");
                }
            }
        }
    }

    #[test]
    fn lines_leave_out_their_end_and_clip_without_walking_the_whole_line() {
        assert_eq!(
            pixels((0, 0), (3, 1), all(8, 8)),
            vec![(0, 0), (1, 0), (2, 1)]
        );
        assert!(pixels((2, 2), (2, 2), all(8, 8)).is_empty());
        // A line across the whole i32 range: only the area's columns.
        let a = Area {
            left: 2,
            top: 0,
            right: 6,
            bottom: 8,
        };
        let v = pixels((i32::MIN, 3), (i32::MAX, 3), a);
        assert_eq!(v, vec![(2, 3), (3, 3), (4, 3), (5, 3)]);
        let v = pixels(
            (-1_000_000_000, -1_000_000_000),
            (1_000_000_000, 1_000_000_000),
            all(4, 4),
        );
        assert_eq!(v, vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    }

    fn seg(flags: u32, pts: &[(i32, i32)]) -> PathSeg {
        PathSeg {
            flags,
            points: pts.iter().map(|&(x, y)| PointFix { x, y }).collect(),
        }
    }

    #[test]
    fn paths_flatten_as_the_canvas_does() {
        use path_flags::*;
        assert_eq!(fix_to_int(0x18), 1, "1.5 rounds down");
        assert_eq!(fix_to_int(0x19), 2);
        assert_eq!(fix_to_int(-8), -1);
        // BEGIN starts a polyline; END|CLOSE goes back to its first point.
        let p = [
            seg(BEGIN, &[(0, 0), (160, 0)]),
            seg(END | CLOSE, &[(160, 160)]),
            seg(BEGIN | END, &[(16, 16), (32, 16)]),
        ];
        assert_eq!(
            flatten(&p),
            vec![
                vec![(0, 0), (10, 0), (10, 10), (0, 0)],
                vec![(1, 1), (2, 1)]
            ]
        );
        // A straight Bézier is one piece; a bent one several; a bad point
        // count stops the stroke with what was finished.
        let straight = [seg(BEGIN | BEZIER, &[(0, 0), (16, 0), (32, 0), (48, 0)])];
        assert_eq!(flatten(&straight), vec![vec![(0, 0), (3, 0)]]);
        let bent = [seg(
            BEGIN | BEZIER,
            &[(0, 0), (0, 640), (640, 640), (640, 0)],
        )];
        let f = flatten(&bent);
        assert!(f[0].len() > 4, "{f:?}");
        assert_eq!(f[0].last(), Some(&(40, 0)));
        let bad = [
            seg(BEGIN | END, &[(0, 0), (16, 0)]),
            seg(BEGIN | BEZIER, &[(0, 0), (1, 1)]),
        ];
        assert_eq!(flatten(&bad), vec![vec![(0, 0), (1, 0)]]);
        // A degenerate curve (every point the same) ends at the depth bound.
        let dot = [seg(
            BEGIN | BEZIER,
            &[(80, 80), (80, 80), (80, 80), (80, 80)],
        )];
        assert_eq!(flatten(&dot)[0].len(), 1 + (1 << MAX_BEZIER_DEPTH));
        // Hostile: a huge point count is cut at the bound.
        let many = vec![seg(BEGIN, &vec![(0, 0); MAX_LINE_POINTS + 10])];
        assert_eq!(flatten(&many)[0].len(), MAX_LINE_POINTS);
    }

    #[test]
    fn strokes_paint_with_the_rop_and_dashes() {
        let mut c = Canvas::new(8, 2).unwrap();
        let s = StrokePaint {
            lines: vec![vec![(0, 0), (8, 0)]],
            dashes: StrokePaint::dashes(0, &[2 << 4, 1 << 4]),
            brush: BrushPaint::Solid(0x00ff00),
            rop: super::super::qxl_canvas::ropd::OP_XOR,
        };
        paint_stroke(&mut c, all(8, 2), &s);
        let g = 0x00ff00;
        assert_eq!(c.row(0, 0, 8), &[g, g, 0, g, g, 0, g, g]);
        assert_eq!(c.row(1, 0, 8), &[0; 8]);
        paint_stroke(&mut c, all(8, 2), &s);
        assert_eq!(c.row(0, 0, 8), &[0; 8], "XOR twice");
        let gap = StrokePaint::dashes(LINE_FLAGS_START_WITH_GAP, &[2 << 4, 1 << 4]).unwrap();
        assert_eq!(gap, (vec![1, 2], 1));
    }
}
