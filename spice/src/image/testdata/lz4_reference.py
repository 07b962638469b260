"""Decodes SPICE LZ4 image payloads the way spice-gtk does (spice-common canvas_base.c,
canvas_get_lz4), calling the reference liblz4 (Debian package liblz4-1) through ctypes:
LZ4_createStreamDecode + LZ4_decompress_safe_continue into one contiguous buffer.

Usage: python3 lz4_reference.py FILE:WIDTH:HEIGHT...
Writes FILE.bgrx: the decoded buffer, rows top-down, 4 bytes per pixel (B G R X).
Exits non-zero on any error the client would report, and also when the blocks do not fill
the image exactly (the client would leave the rest of the surface undefined).
"""
import ctypes
import sys

lz4 = ctypes.CDLL("liblz4.so.1")
lz4.LZ4_createStreamDecode.restype = ctypes.c_void_p
lz4.LZ4_freeStreamDecode.argtypes = [ctypes.c_void_p]
lz4.LZ4_decompress_safe_continue.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
lz4.LZ4_decompress_safe_continue.restype = ctypes.c_int


def decode(data, width, height):
    if len(data) < 2:
        raise ValueError("missing header in LZ4 data")
    top_down, fmt = data[0] != 0, data[1]
    if fmt != 8:
        raise ValueError("unsupported bitmap format %d" % fmt)
    stride = width * 4
    buf = ctypes.create_string_buffer(stride * height)
    available = stride * height
    dest = 0
    pos = 2
    stream = lz4.LZ4_createStreamDecode()
    try:
        while True:  # do { ... } while (data < data_end) in canvas_get_lz4
            if pos + 4 > len(data):
                raise ValueError("truncated block length")
            enc_size = int.from_bytes(data[pos:pos + 4], "big")
            pos += 4
            if enc_size > len(data) - pos:
                raise ValueError("block past end of data")
            dec = lz4.LZ4_decompress_safe_continue(
                stream, data[pos:pos + enc_size], ctypes.addressof(buf) + dest,
                enc_size, available)
            if dec <= 0:
                raise ValueError("error decoding LZ4 block")
            dest += dec
            available -= dec
            pos += enc_size
            if pos >= len(data):
                break
    finally:
        lz4.LZ4_freeStreamDecode(stream)
    if dest != stride * height:
        raise ValueError("decoded %d bytes, image holds %d" % (dest, stride * height))
    raw = buf.raw
    if not top_down:
        raw = b"".join(raw[y * stride:(y + 1) * stride] for y in reversed(range(height)))
    return raw


for arg in sys.argv[1:]:
    path, width, height = arg.rsplit(":", 2)
    with open(path, "rb") as f:
        data = f.read()
    try:
        out = decode(data, int(width), int(height))
    except ValueError as e:
        sys.exit("%s: %s" % (path, e))
    with open(path + ".bgrx", "wb") as f:
        f.write(out)
