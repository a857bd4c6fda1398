/**
 * The one HTTP(S) client for everything imgclf downloads (Node only): IDX datasets
 * (node/data/datasets.ts) and backbones given by URL (node/backbone/files.ts).
 *
 * Nothing a server says is trusted: a body is read under a byte cap (a Content-Length over it
 * is refused before reading), a server that does not answer, a body that pauses and a whole
 * download that drags on each fail on their own timer, and redirects are followed by hand,
 * to the same host only. Failures are plain Errors whose message is the reason alone
 * ("HTTP 404", "no data for 30 s"); callers put the URL and what to do around it.
 *
 * There is no resuming: every file imgclf downloads is small enough (tens of MB) to fetch
 * again, and a partial file is never kept. `downloadToFile` writes into a temp file the caller
 * renames into place once it has checked it (node/fs.ts `withAtomicFile`).
 */
import { open } from 'node:fs/promises';

export interface DownloadLimits {
  /** For the whole file, redirects included. */
  timeoutMs: number;
  /** Per request, until the response headers arrive. */
  connectTimeoutMs: number;
  /** Longest gap between two chunks of the body. */
  idleTimeoutMs: number;
  /** Largest body accepted. */
  maxBytes: number;
  /**
   * Other hosts a redirect may lead to, besides the same host (a model hub's own CDN); the
   * https -> http rule still holds.
   */
  alsoRedirectTo?: (to: URL) => boolean;
}

/** The timers most downloads use: a minute for a whole file, 30 s of silence at most. */
export const DEFAULT_TIMEOUTS: Omit<DownloadLimits, 'maxBytes'> = {
  timeoutMs: 60_000,
  connectTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
};

/** Same-host redirects followed per file (http -> https, a moved folder); more is a loop. */
export const MAX_REDIRECTS = 5;

/**
 * Streams `url` into the file `dest` (created or truncated, flushed to disk), handing each
 * chunk to `onChunk` too (to hash it on the way). Resolves with the number of bytes written.
 */
export async function downloadToFile(
  url: string,
  dest: string,
  limits: DownloadLimits,
  onChunk?: (chunk: Uint8Array) => void,
): Promise<number> {
  const handle = await open(dest, 'w');
  try {
    const total = await download(url, limits, async (chunk) => {
      onChunk?.(chunk);
      await handle.writeFile(chunk);
    });
    await handle.sync(); // what the caller renames into place must be on disk
    return total;
  } finally {
    await handle.close();
  }
}

/** The body of `url` in memory, within the same limits. */
export async function downloadBytes(url: string, limits: DownloadLimits): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const total = await download(url, limits, (chunk) => void chunks.push(chunk));
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/**
 * Reads the body of `url` chunk by chunk into `sink` and resolves with its length. Fails (and
 * stops reading) on the first limit crossed: a body larger than `maxBytes`, no response within
 * `connectTimeoutMs`, a pause over `idleTimeoutMs`, the whole over `timeoutMs`, or a redirect to
 * another host. fetch() has one signal for all of these, so each timer records why it aborted.
 */
async function download(
  url: string,
  limits: DownloadLimits,
  sink: (chunk: Uint8Array) => void | Promise<void>,
): Promise<number> {
  const controller = new AbortController();
  let reason: string | undefined;
  const stop = (message: string) => {
    reason ??= message;
    controller.abort(new Error(message));
  };
  const overall = setTimeout(() => stop(`took longer than ${seconds(limits.timeoutMs)}`), limits.timeoutMs);
  let idle: NodeJS.Timeout | undefined;
  try {
    const response = await requestSameHost(
      new URL(url),
      controller.signal,
      limits.connectTimeoutMs,
      stop,
      limits.alsoRedirectTo,
    );
    const length = Number(response.headers.get('content-length') ?? NaN);
    if (length > limits.maxBytes) {
      throw new Error(`is ${length} bytes, more than the ${limits.maxBytes} allowed for one download`);
    }
    if (!response.body) throw new Error('empty response');
    const reader = response.body.getReader();
    idle = setTimeout(() => stop(`no data for ${seconds(limits.idleTimeoutMs)}`), limits.idleTimeoutMs);
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      idle.refresh();
      total += value.length;
      if (total > limits.maxBytes) {
        stop(`sent more than ${limits.maxBytes} bytes, the most allowed for one download; stopped`);
        throw new Error(reason);
      }
      await sink(value);
    }
    return total;
  } catch (err) {
    if (reason) throw new Error(reason, { cause: err });
    throw err;
  } finally {
    clearTimeout(overall);
    clearTimeout(idle);
    // Closes the connection when we stopped early; a no-op after a complete body.
    controller.abort();
  }
}

/**
 * Requests `url`, following redirects only within the same host. fetch() would follow up to 20
 * redirects to anywhere, including from https to plain http or to hosts on the local network;
 * a server that is compromised or misconfigured could then pick what we download and from
 * where, and the failure would name the server, not where it sent us. So redirects are followed
 * here, by hand (`redirect: 'manual'`), to the same host name only, never from https to http, at
 * most MAX_REDIRECTS times. Resolves with the first non-redirect response, which must be 2xx.
 */
async function requestSameHost(
  url: URL,
  signal: AbortSignal,
  connectTimeoutMs: number,
  stop: (message: string) => void,
  alsoRedirectTo?: (to: URL) => boolean,
): Promise<Response> {
  if (!/^https?:$/.test(url.protocol)) throw new Error(`${url.protocol} is not http: or https:`);
  for (let hop = 0; ; hop++) {
    const response = await request(url, signal, connectTimeoutMs, stop);
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || !location) {
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status}`);
      }
      return response;
    }
    await response.body?.cancel();
    const next = new URL(location, url);
    // Same host name, any port: 127.0.0.1 -> localhost is refused, /a -> /b and :80 -> :8080 are not.
    const allowed = next.hostname === url.hostname || alsoRedirectTo?.(next) === true;
    if (!allowed || !/^https?:$/.test(next.protocol)) {
      throw new Error(
        `redirected to ${next.host || next.href}; not followed (only same-host redirects are: use the address it redirects to if you trust it)`,
      );
    }
    if (url.protocol === 'https:' && next.protocol === 'http:') {
      throw new Error(`redirected from https to ${next.href}; not followed`);
    }
    if (hop === MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects; last to ${next.href}`);
    url = next;
  }
}

/**
 * One request, without following redirects. "Connecting" covers DNS, TCP, TLS and waiting for
 * the response headers: fetch() does not tell those apart, and a server that accepts the
 * connection but never answers is as stuck as one that never accepts it.
 */
async function request(
  url: URL,
  signal: AbortSignal,
  connectTimeoutMs: number,
  stop: (message: string) => void,
): Promise<Response> {
  const timer = setTimeout(
    () => stop(`timed out connecting to ${url.host} (no response in ${seconds(connectTimeoutMs)})`),
    connectTimeoutMs,
  );
  try {
    // `identity`: the bytes as published (a `.gz` MD5 is of those), not a re-encoding fetch()
    // would undo on the way, and a byte cap that counts what arrives.
    return await fetch(url, { signal, redirect: 'manual', headers: { 'accept-encoding': 'identity' } });
  } catch (err) {
    if (signal.aborted) throw err; // download() names the timer that fired
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(cause?.code ?? cause?.message ?? (err as Error).message, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}
