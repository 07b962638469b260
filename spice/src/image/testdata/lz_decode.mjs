// Decodes SPICE LZ_RGB payloads with spice-html5's own decoder (Debian package spice-html5,
// /usr/share/spice-html5/lz.js), as an independent check of the Rust encoder.
//
// Usage: node lz_decode.mjs FILE.lz...  writes FILE.lz.rgba (R G B A bytes, top-down) for each.
// The header is parsed the way spice-html5's spicetype.js does (big-endian words), then
// convert_spice_lz_to_web() decodes the stream into an ImageData-like buffer.
import { readFileSync, writeFileSync } from 'node:fs';

const LZ_JS = process.env.SPICE_HTML5_LZ_JS || '/usr/share/spice-html5/lz.js';
const { convert_spice_lz_to_web } = await import(LZ_JS);

// convert_spice_lz_to_web only needs createImageData from the canvas context.
const context = {
  createImageData: (width, height) => ({ width, height, data: new Uint8ClampedArray(width * height * 4) }),
};

for (const path of process.argv.slice(2)) {
  const bytes = readFileSync(path);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // spicetype.js reads the magic bytes in reverse order and expects "LZ  ".
  let magic = '';
  for (let i = 3; i >= 0; i--) magic += String.fromCharCode(dv.getUint8(i));
  const image = {
    magic,
    version: dv.getUint32(4),
    type: dv.getUint32(8),
    width: dv.getUint32(12),
    height: dv.getUint32(16),
    stride: dv.getUint32(20),
    top_down: dv.getUint32(24),
    data: bytes.buffer.slice(bytes.byteOffset + 28, bytes.byteOffset + bytes.byteLength),
  };
  if (image.magic !== 'LZ  ' || image.version !== 0x10001) {
    console.error(`${path}: bad header magic=${JSON.stringify(image.magic)} version=${image.version}`);
    process.exit(2);
  }
  // lz.js ignores the stride; spice-common's lz.c rejects anything but width * 4 for RGB32.
  if (image.stride !== image.width * 4) {
    console.error(`${path}: stride ${image.stride} != width*4`);
    process.exit(2);
  }
  const out = convert_spice_lz_to_web(context, image);
  if (!out) {
    console.error(`${path}: lz.js could not decode type ${image.type}`);
    process.exit(3);
  }
  writeFileSync(path + '.rgba', out.data);
}
