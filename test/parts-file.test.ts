import { describe, expect, it } from 'vitest';
import { float32View, packParts, unpackParts } from '../src/node/parts-file.js';

const join = (chunks: Uint8Array[]) => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
};

describe('parts file', () => {
  it('round-trips a header and parts, with float parts 4-byte aligned', () => {
    const floats = Float32Array.of(1.5, -2, 3.25);
    const bytes = join(
      packParts({ format: 'x', n: 3 }, [Uint8Array.of(1, 2, 3), new Uint8Array(floats.buffer)]),
    );
    const r = unpackParts<{ format: string; n: number }>(bytes)!;
    expect(r.header).toMatchObject({ format: 'x', n: 3 });
    expect(Array.from(r.parts[0])).toEqual([1, 2, 3]);
    expect(r.parts[1].byteOffset % 4).toBe(0);
    expect(Array.from(float32View(r.parts[1]))).toEqual([1.5, -2, 3.25]);
  });

  it('rejects truncated, extended and foreign bytes', () => {
    const bytes = join(packParts({ a: 1 }, [new Uint8Array(10)]));
    expect(unpackParts(bytes.subarray(0, bytes.length - 1))).toBeUndefined();
    expect(unpackParts(join([bytes, new Uint8Array(4)]))).toBeUndefined();
    expect(unpackParts(new TextEncoder().encode('not a parts file'))).toBeUndefined();
    expect(unpackParts(new Uint8Array(2))).toBeUndefined();
  });

  it('copies an unaligned float part instead of failing', () => {
    const raw = new Uint8Array(9);
    raw.set(new Uint8Array(Float32Array.of(7, 8).buffer), 1);
    expect(Array.from(float32View(raw.subarray(1)))).toEqual([7, 8]);
  });
});
