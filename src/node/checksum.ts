/**
 * Checksums and file verification (Node only): the digests a dataset's files are checked
 * against, and the per-file report `data info`, the loaders and the decoded cache share.
 */
import { createHash } from 'node:crypto';

/** A file's name and the checksums it may be verified against (see data/datasets.ts). */
export interface ChecksumSpec {
  name: string;
  /** SHA-256 of the decompressed bytes. */
  sha256?: string;
  /** MD5 of the published `.gz` file. */
  gzMd5?: string;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function md5(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex');
}

export interface Verification {
  /** True when a checksum the spec knows matched. */
  verified: boolean;
  /** Which checksum decided: a raw file cannot be checked against a `.gz` MD5. */
  method: 'sha256' | 'gz-md5' | 'none';
  /** SHA-256 of the decompressed bytes, always computed (for reports). */
  sha256: string;
}

/** Checks a file's bytes (decompressed, and the `.gz` when it was one) against its spec. */
export function verifyFile(file: ChecksumSpec, raw: Uint8Array, gz?: Uint8Array): Verification {
  return verifyDigests(file, sha256(raw), gz && md5(gz));
}

/**
 * `verifyFile` from digests already computed, e.g. while a file was streamed: `rawSha256` of the
 * decompressed bytes, `gzMd5` of the `.gz` when the file was one.
 */
export function verifyDigests(file: ChecksumSpec, rawSha256: string, gzMd5?: string): Verification {
  if (file.sha256) return { verified: rawSha256 === file.sha256, method: 'sha256', sha256: rawSha256 };
  if (file.gzMd5 && gzMd5 !== undefined)
    return { verified: gzMd5 === file.gzMd5, method: 'gz-md5', sha256: rawSha256 };
  return { verified: false, method: 'none', sha256: rawSha256 };
}

export interface FileReport {
  name: string;
  path: string;
  verified: boolean;
  /** How the file was checked; 'none' for a decompressed copy of a dataset known only by `.gz` MD5s. */
  method: Verification['method'];
  sha256: string;
}
