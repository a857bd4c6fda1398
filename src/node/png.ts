/**
 * Decoding a small, plain PNG without libvips (node/image.ts's fast path).
 *
 * A folder of pictures that already have the model's size (28 px PNGs for a 28 px model) needs
 * no resampling: every step after decoding is the identity or a per-pixel rule. A call into
 * sharp then costs far more than the work: libvips sets up a pipeline and hops to libuv's
 * threads, about 0.3 ms of CPU a call, against about 0.05 ms to inflate and unfilter 28x28
 * pixels here. So such files are decoded here, and anything else goes to sharp as before.
 *
 * Only the plainest files are taken: 8 bits a sample, grey, grey+alpha, RGB or RGBA, not
 * interlaced, every chunk's CRC right, and none of the chunks that would make libvips' pixels
 * differ from the stored ones (a colour profile or gamma, EXIF orientation, transparency keys,
 * animation). Everything else returns undefined and is sharp's.
 *
 * Why not a library (fast-png, pngjs): both inflate the whole image data before comparing it
 * with the size the header declares, so a 28x28 header over a zlib bomb would inflate
 * gigabytes. node:zlib's maxOutputLength stops at the size the header implies.
 */
import zlib from 'node:zlib';

export interface RawPixels {
  width: number;
  height: number;
  /** 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** height * width * channels bytes, row by row. */
  pixels: Uint8Array;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Colour type → samples a pixel, for the 8-bit types taken here (3, palette, is not). */
const CHANNELS: Record<number, RawPixels['channels']> = { 0: 1, 4: 2, 2: 3, 6: 4 };
/**
 * Chunks after which libvips' pixels may differ from the stored samples, or a picture is not
 * one plain frame: colour profile and colour space (iCCP, sRGB, gAMA, cHRM, cICP, mDCV),
 * EXIF orientation (eXIf), a transparent colour key (tRNS), animation (acTL).
 */
const DECLINED = new Set(['iCCP', 'sRGB', 'gAMA', 'cHRM', 'cICP', 'mDCV', 'eXIf', 'tRNS', 'acTL']);

const u32 = (b: Uint8Array, at: number) =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

/**
 * The pixels of a plain 8-bit PNG of at most `maxPixels` pixels, or undefined when the file is
 * anything else (another format, another kind of PNG, a damaged one): sharp then decodes it and
 * reports what is wrong.
 */
export function decodePlainPng(bytes: Uint8Array, maxPixels: number): RawPixels | undefined {
  if (bytes.length < 57 || SIGNATURE.some((v, i) => bytes[i] !== v)) return undefined;
  const parts: Uint8Array[] = [];
  let header: { width: number; height: number; channels: RawPixels['channels'] } | undefined;
  let at = 8;
  for (;;) {
    if (at + 12 > bytes.length) return undefined;
    const length = u32(bytes, at);
    const end = at + 12 + length;
    if (end > bytes.length) return undefined;
    const type = String.fromCharCode(bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]);
    if (zlib.crc32(bytes.subarray(at + 4, at + 8 + length)) !== u32(bytes, at + 8 + length)) return undefined;
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      const [depth, colour, compression, filter, interlace] = data.subarray(8, 13);
      const channels = CHANNELS[colour];
      const width = u32(data, 0);
      const height = u32(data, 4);
      if (length !== 13 || depth !== 8 || !channels || compression || filter || interlace) return undefined;
      if (!width || !height || width * height > maxPixels) return undefined;
      header = { width, height, channels };
    } else if (!header || DECLINED.has(type)) {
      return undefined;
    } else if (type === 'IDAT') {
      parts.push(data);
    } else if (type === 'IEND') {
      break;
    }
    at = end;
  }
  if (!header || parts.length === 0) return undefined;
  const { width, height, channels } = header;
  const stride = width * channels;
  let filtered: Buffer;
  try {
    // One filter byte a row, then the row: anything longer than that is refused before it is
    // inflated in full.
    filtered = zlib.inflateSync(parts.length === 1 ? parts[0] : Buffer.concat(parts), {
      maxOutputLength: height * (stride + 1),
    });
  } catch {
    return undefined;
  }
  if (filtered.length !== height * (stride + 1)) return undefined;
  const pixels = unfilter(filtered, height, stride, channels);
  return pixels && { width, height, channels, pixels };
}

/** PNG's five row filters undone (the PNG specification, section 9). */
function unfilter(data: Uint8Array, height: number, stride: number, bpp: number): Uint8Array | undefined {
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = data[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const up = row - stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[row + x - bpp] : 0;
      const b = y > 0 ? out[up + x] : 0;
      let v: number;
      switch (filter) {
        case 0:
          v = 0;
          break;
        case 1:
          v = a;
          break;
        case 2:
          v = b;
          break;
        case 3:
          v = (a + b) >> 1;
          break;
        case 4: {
          const c = x >= bpp && y > 0 ? out[up + x - bpp] : 0;
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          return undefined;
      }
      out[row + x] = (data[src + x] + v) & 0xff;
    }
  }
  return out;
}
