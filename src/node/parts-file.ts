/**
 * A small binary container shared by imgclf's caches: a JSON header and byte parts.
 *
 * Layout: u32 (little-endian) header length, the JSON header (which records every part's
 * length), then each part, every section padded to a multiple of 4 bytes so a Float32Array can
 * view a part in place. Pure: bytes in, bytes out.
 */

const pad4 = (n: number): number => (n + 3) & ~3;

/**
 * The file's chunks, in order, ready for a chunked atomic write (no joined copy of large parts).
 * `header` must not use the key `partLengths`.
 */
export function packParts(header: object, parts: Uint8Array[]): Uint8Array[] {
  const json = new TextEncoder().encode(
    JSON.stringify({ ...header, partLengths: parts.map((p) => p.length) }),
  );
  const head = new Uint8Array(pad4(4 + json.length));
  new DataView(head.buffer).setUint32(0, json.length, true);
  head.set(json, 4);
  const chunks: Uint8Array[] = [head];
  for (const p of parts) {
    chunks.push(p);
    if (p.length % 4) chunks.push(new Uint8Array(pad4(p.length) - p.length));
  }
  return chunks;
}

/**
 * The header and views of the parts, or undefined when the bytes are truncated, padded wrongly
 * or not such a file.
 */
export function unpackParts<H extends object>(
  bytes: Uint8Array,
): { header: H; parts: Uint8Array[] } | undefined {
  if (bytes.length < 4) return undefined;
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (4 + length > bytes.length) return undefined;
  let header: H & { partLengths?: unknown };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length))) as H & {
      partLengths?: unknown;
    };
  } catch {
    return undefined;
  }
  const lengths = header.partLengths;
  if (!Array.isArray(lengths) || !lengths.every((n) => Number.isInteger(n) && n >= 0)) return undefined;
  let offset = pad4(4 + length);
  const parts: Uint8Array[] = [];
  for (const n of lengths as number[]) {
    parts.push(bytes.subarray(offset, offset + n));
    offset += pad4(n);
  }
  if (offset !== bytes.length) return undefined;
  return { header, parts };
}

/** A Float32Array over `bytes` without copying when it is aligned, else over a copy. */
export function float32View(bytes: Uint8Array): Float32Array {
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  return new Float32Array(bytes.slice().buffer);
}
