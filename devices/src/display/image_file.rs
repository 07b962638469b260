//! A frame as a PNG or PPM file: what screendump writes and tests compare.

use std::io::Write;

use super::render::Frame;

/// 8-bit RGB PNG of `frame`.
pub fn write_png(frame: &Frame, out: impl Write) -> std::io::Result<()> {
    let mut enc = png::Encoder::new(out, frame.width, frame.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    w.write_image_data(&rgb_bytes(frame))
        .map_err(std::io::Error::other)?;
    w.finish().map_err(std::io::Error::other)
}

/// Binary PPM (P6) of `frame`, as QEMU's screendump writes by default.
pub fn write_ppm(frame: &Frame, mut out: impl Write) -> std::io::Result<()> {
    write!(out, "P6\n{} {}\n255\n", frame.width, frame.height)?;
    out.write_all(&rgb_bytes(frame))
}

fn rgb_bytes(frame: &Frame) -> Vec<u8> {
    frame
        .pixels
        .iter()
        .flat_map(|&p| [(p >> 16) as u8, (p >> 8) as u8, p as u8])
        .collect()
}

/// Decode a PNG written by anyone into a frame (for tests and comparisons).
pub fn read_png(data: &[u8]) -> std::io::Result<Frame> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(data));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(std::io::Error::other)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(std::io::Error::other)?;
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => {
            return Err(std::io::Error::other(format!(
                "unsupported PNG colour type {other:?}"
            )))
        }
    };
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(step)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect();
    Ok(Frame {
        width: info.width,
        height: info.height,
        pixels,
    })
}

/// Decode a binary PPM (P6, maxval 255), e.g. from QEMU's screendump or
/// spicy-screenshot.
pub fn read_ppm(data: &[u8]) -> std::io::Result<Frame> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    // Header: magic, width, height, maxval as whitespace-separated tokens
    // (comments start with '#'), then one whitespace byte.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if data.get(i) == Some(&b'#') {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err(bad("truncated PPM header"));
        }
        fields.push(std::str::from_utf8(&data[start..i]).map_err(|_| bad("bad PPM header"))?);
    }
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(bad("not a P6 PPM with maxval 255"));
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| bad("bad PPM size"));
    let (width, height) = (num(fields[1])?, num(fields[2])?);
    let body = data.get(i + 1..).ok_or_else(|| bad("truncated PPM"))?;
    let n = width as usize * height as usize;
    if body.len() < n * 3 {
        return Err(bad("truncated PPM body"));
    }
    let pixels = body[..n * 3]
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect();
    Ok(Frame {
        width,
        height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            width: 3,
            height: 2,
            pixels: vec![0xff0000, 0x00ff00, 0x0000ff, 0x123456, 0, 0xffffff],
        }
    }

    #[test]
    fn png_and_ppm_round_trip() {
        let mut png = Vec::new();
        write_png(&sample(), &mut png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(read_png(&png).unwrap(), sample());
        let mut ppm = Vec::new();
        write_ppm(&sample(), &mut ppm).unwrap();
        assert!(ppm.starts_with(b"P6\n3 2\n255\n"));
        assert_eq!(read_ppm(&ppm).unwrap(), sample());
        assert!(read_ppm(b"P6\n3 2\n255\n\x00").is_err());
        assert!(read_ppm(b"P5 1 1 255 x").is_err());
        assert!(read_png(b"not a png").is_err());
    }
}
