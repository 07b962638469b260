//! Cost of one display refresh (render + change detection) per frame, as the
//! VMM's display thread pays it every 30 ms. Prints a table; run with
//! `cargo bench -p devices --bench display`.
//!
//! "dirty log" rows are what a mapped framebuffer costs (the hypervisor's page
//! log says what changed; the log read itself, one ioctl, is not included);
//! "compare" rows are the fallback when no log is available (render whole and
//! diff against the last frame).

use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::display::qxl::{Qxl, QxlConfig};
use devices::display::{FbDirty, Screen};
use devices::interrupt::NoIrq;

fn dispi(q: &mut Qxl, index: u16, value: u16) {
    q.vga_port_write(0x1ce, &index.to_le_bytes());
    q.vga_port_write(0x1cf, &value.to_le_bytes());
}

fn setup(w: u16, h: u16) -> (Qxl, Screen) {
    let mut q = Qxl::new(QxlConfig::default(), Vec::new(), Arc::new(NoIrq)).unwrap();
    q.vga_port_write(0x3c0, &[0x20]);
    for (i, v) in [(4, 0), (3, 32), (1, w), (2, h), (4, 0x41)] {
        dispi(&mut q, i, v);
    }
    let mut s = Screen::new();
    s.refresh(&q, FbDirty::Unknown, Instant::now());
    (q, s)
}

/// Median time of `f` over enough runs to take about half a second.
fn time(mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5
        || (start.elapsed() < Duration::from_millis(500) && samples.len() < 1000)
    {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    println!("| resolution | screen | change detection | time per refresh |");
    println!("| --- | --- | --- | --- |");
    for (w, h) in [(1024u16, 768u16), (1920, 1080)] {
        let (q, mut s) = setup(w, h);
        let bytes = usize::from(w) * usize::from(h) * 4;
        let pages = bytes.div_ceil(4096);
        let words = (q.ram().len() / 4096).div_ceil(64);
        let none = vec![0u64; words];
        let mut all = vec![0u64; words];
        for p in 0..pages {
            all[p / 64] |= 1 << (p % 64);
        }
        let res = format!("{w}x{h}x32");
        let t = time(|| {
            let u = s.refresh(&q, FbDirty::Pages(none.clone()), Instant::now());
            assert!(u.is_empty());
        });
        println!("| {res} | still | dirty log | {t:?} |");
        let t = time(|| {
            let u = s.refresh(&q, FbDirty::Unknown, Instant::now());
            assert!(u.is_empty());
        });
        println!("| {res} | still | compare | {t:?} |");
        let mut colour = 0u8;
        let mut change_all = |q: &Qxl| {
            colour = colour.wrapping_add(1);
            // Every row gets a new colour: the guest repainted the screen.
            let row = vec![colour; usize::from(w) * 4];
            for y in 0..usize::from(h) {
                q.ram().write((y * usize::from(w) * 4) as u64, &row);
            }
        };
        let t = time(|| {
            change_all(&q);
            let u = s.refresh(&q, FbDirty::Pages(all.clone()), Instant::now());
            assert_eq!(u.rects.len(), 1);
        });
        println!("| {res} | full change (incl. guest write) | dirty log | {t:?} |");
        let t = time(|| {
            change_all(&q);
            let u = s.refresh(&q, FbDirty::Unknown, Instant::now());
            assert_eq!(u.rects.len(), 1);
        });
        println!("| {res} | full change (incl. guest write) | compare | {t:?} |");
        let t = time(|| change_all(&q));
        println!("| {res} | (the guest write alone) | - | {t:?} |");
    }
}
