/**
 * Load benchmark for `imgclf serve`: POST /api/predict over loopback from 50 concurrent
 * connections for 10 s (autocannon), with the server's resident memory before and after.
 *
 *   npx tsx bench/serve-load.ts [--model DIR] [--connections 50] [--seconds 10] [--out FILE]
 *   npx tsx bench/serve-load.ts --mixed [--seconds 60] [--bad-workers 4] ...
 *   npx tsx bench/serve-load.ts --engines [--seconds 10]   # tfjs and ONNX Runtime, side by side
 *
 * Without --model it trains a 1-epoch softmax run into a temporary folder first. The server
 * runs as its own process, started exactly as a user starts it, so its RSS is read from
 * /proc/PID/status. `--seconds` (or `--duration`, or $SERVE_LOAD_SECONDS) sets the length.
 *
 * --mixed: the good requests run as above while `--bad-workers` loops send bad ones, in turn:
 * bytes that are no image, a pixel bomb (a PNG header declaring 60000x60000 pixels), uploads
 * cut off mid-body, malformed multipart, and a request declaring more than the request cap.
 * Hostile loops run beside them: 4 that each keep a batch of 16 SVG bombs (nested <use>, 2 KB
 * each) in flight, one sending 5 MB JSON bodies (a nested array), one sending cross-site POSTs
 * of a good image (Origin: http://evil.example, Sec-Fetch-Site: cross-site). It reports whether
 * the server survived (no exit, healthy after), p50/p99 latency of the good requests and of
 * every bad and hostile kind, the answers they got, and peak RSS and RSS growth (target at most
 * 50 MB); default 60 s.
 *
 * Writes bench/results/serve-load.json (--mixed: serve-load-mixed.json; --out FILE elsewhere);
 * exits 1 when a good request failed, a bad one got a 500, the server died or is unhealthy
 * after, or RSS grew by more than 50 MB.
 */
import autocannon from 'autocannon';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pngDeclaring } from '../src/node/data/shapes.js';
import sharp from 'sharp';
import { imageSize, pixelsAsFloat } from '../src/core/data/dataset.js';
import { loadDataset } from '../src/node/data/load.js';
import { writeFileAtomic } from '../src/node/fs.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'imgclf.js');
const MAX_GROWTH_MB = 50;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const flag = (name: string) => process.argv.includes(`--${name}`);

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return kb / 1024;
}

/** Trains the benchmark model unless --model names one. */
function benchModel(): string {
  let model = arg('model', '');
  if (!model) {
    model = path.join(mkdtempSync(path.join(os.tmpdir(), 'imgclf-bench-')), 'run');
    const r = spawnSync(process.execPath, [BIN, 'train', '--epochs', '1', '--out', model], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`training the benchmark model failed: ${r.stderr}`);
  }
  return model;
}

/** `imgclf serve` on a free port, as a user starts it; resolves with its URL. */
function startServer(model: string, extra: string[] = []): { server: ChildProcess; ready: Promise<string> } {
  const server = spawn(process.execPath, [BIN, 'serve', '--run', model, '--port', '0', '--json', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    server.once('exit', (code) => reject(new Error(`imgclf serve exited with ${code}`)));
  });
  return { server, ready };
}

/**
 * Fashion-MNIST test image 0 as the PNG `GET /api/data/test/image/0` hands out (the same bytes,
 * made the same way), made here so that the server does not load the dataset: 60000 images
 * would leave some 200 MB of garbage in the server until its next full GC, and the RSS
 * measured would be that GC's timing rather than the load's.
 */
async function testImagePng(): Promise<Buffer> {
  const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
  const [h, w, c] = dataset.shape;
  if (c !== 1) throw new Error(`Fashion-MNIST has one channel, not ${c}`);
  const row = imageSize(dataset.shape);
  const bytes = Buffer.from(
    Uint8Array.from(pixelsAsFloat(dataset.test.images, 0, row), (v) => Math.round(v * 255)),
  );
  return sharp(bytes, { raw: { width: w, height: h, channels: c } })
    .png()
    .toBuffer();
}

// --- bad requests -------------------------------------------------------------------------

/**
 * One exchange over a raw socket: writes `head` and `body`, then either waits for the status
 * line (returns the status) or, with `abortAfterMs`, destroys the socket that long after
 * writing (returns 0: an aborted upload gets no answer).
 */
function rawRequest(port: number, head: string, body: Buffer, abortAfterMs?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let response = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 30 s'));
    }, 30_000);
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (abortAfterMs === undefined) reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (abortAfterMs === undefined) reject(new Error('closed without an answer'));
    });
    socket.on('data', (d) => {
      response += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(response);
      if (m) {
        clearTimeout(timer);
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.write(head);
    socket.write(body);
    if (abortAfterMs !== undefined) {
      setTimeout(() => {
        clearTimeout(timer);
        socket.destroy();
        resolve(0);
      }, abortAfterMs);
    }
  });
}

const rawHead = (port: number, url: string, type: string, length: number) =>
  `POST ${url} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n\r\n`;

/** The kinds of bad request, each a function of the port returning the status it got (0 = none). */
function badKinds(good: Buffer): Record<string, (port: number) => Promise<number>> {
  // A header declaring 60000x60000 gray pixels, a few hundred bytes on the wire.
  const bomb = pngDeclaring(60000, 60000);
  const junk = Buffer.from('this is not an image, only some text pretending to be one');
  const boundary = 'benchBoundary';
  const multipart = Buffer.from(
    `--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="x.png"\r\ncontent-type: image/png\r\n\r\n`,
  );
  const fullForm = Buffer.concat([multipart, good, Buffer.from(`\r\n--${boundary}--\r\n`)]);
  return {
    notAnImage: (port) => rawRequest(port, rawHead(port, '/api/predict', 'image/png', junk.length), junk),
    pixelBomb: (port) => rawRequest(port, rawHead(port, '/api/predict', 'image/png', bomb.length), bomb),
    abortedUpload: (port) =>
      rawRequest(
        port,
        rawHead(port, '/api/predict', `multipart/form-data; boundary=${boundary}`, fullForm.length),
        fullForm.subarray(0, Math.floor(fullForm.length / 2)),
        20,
      ),
    abortedAfterUpload: (port) =>
      rawRequest(port, rawHead(port, '/api/predict', 'image/png', good.length), good, 1),
    malformedMultipart: (port) =>
      rawRequest(
        port,
        rawHead(port, '/api/predict', `multipart/form-data; boundary=${boundary}`, multipart.length + 4),
        Buffer.concat([multipart, Buffer.from('abcd')]),
      ),
    overRequestCap: (port) =>
      rawRequest(
        port,
        rawHead(port, '/api/predict/batch', 'multipart/form-data; boundary=x', 1 << 30),
        multipart,
      ),
  };
}

/** Ten levels of <g>, each with ten <use> of the level before: 10^9 rectangles from 2 KB. */
function nestedUseSvg(): Buffer {
  let s =
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100"><defs><g id="l0"><rect width="1" height="1"/></g>';
  for (let l = 1; l < 10; l++)
    s += `<g id="l${l}">${Array.from({ length: 10 }, () => `<use xlink:href="#l${l - 1}"/>`).join('')}</g>`;
  return Buffer.from(`${s}</defs><use xlink:href="#l9"/></svg>`);
}

/** The hostile kinds, each with how many loops send it at once. */
function hostileKinds(
  good: Buffer,
): Record<string, { loops: number; send: (port: number) => Promise<number> }> {
  const boundary = 'benchBoundary';
  const svg = nestedUseSvg();
  const bombs = Buffer.concat([
    ...Array.from({ length: 16 }, (_, i) => [
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="f"; filename="bomb${i}.svg"\r\ncontent-type: image/svg+xml\r\n\r\n`,
      ),
      svg,
      Buffer.from('\r\n'),
    ]).flat(),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  const depth = 2_500_000;
  const json = Buffer.from('['.repeat(depth) + ']'.repeat(depth));
  return {
    svgBombBatch: {
      loops: 4,
      send: (port) =>
        rawRequest(
          port,
          rawHead(port, '/api/predict/batch', `multipart/form-data; boundary=${boundary}`, bombs.length),
          bombs,
        ),
    },
    json5mb: {
      loops: 1,
      send: (port) => rawRequest(port, rawHead(port, '/api/predict', 'application/json', json.length), json),
    },
    crossSite: {
      loops: 1,
      send: (port) =>
        rawRequest(
          port,
          rawHead(port, '/api/predict', 'image/png', good.length).replace(
            '\r\n\r\n',
            '\r\nOrigin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n\r\n',
          ),
          good,
        ),
    },
  };
}

interface BadCounts {
  sent: number;
  /** Answers by status ("0" = none: the client left on purpose). */
  statuses: Record<string, number>;
  clientErrors: number;
  /** Time to the status line (or to leaving, for aborted uploads), in ms. */
  latencyMs?: { p50: number; p99: number; max: number };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;

/** Sends one request with `send`, counting its answer into `c` and its time into `times`. */
async function loop(c: BadCounts, times: number[], send: () => Promise<number>) {
  const t0 = performance.now();
  c.sent++;
  try {
    const status = String(await send());
    c.statuses[status] = (c.statuses[status] ?? 0) + 1;
  } catch {
    c.clientErrors++;
  }
  times.push(performance.now() - t0);
}

function withLatency(c: BadCounts, times: number[]): BadCounts {
  const sorted = times.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x);
  return {
    ...c,
    latencyMs: {
      p50: r(percentile(sorted, 50)),
      p99: r(percentile(sorted, 99)),
      max: r(sorted.at(-1) ?? NaN),
    },
  };
}

/**
 * `workers` loops sending the bad kinds in turn until `stopAt`, and with `hostile`, the hostile
 * kinds in loops of their own.
 */
async function badTraffic(port: number, good: Buffer, workers: number, stopAt: number, hostile = false) {
  const kinds = badKinds(good);
  const names = Object.keys(kinds);
  const hostiles = hostile ? hostileKinds(good) : {};
  const all = [...names, ...Object.keys(hostiles)];
  const counts: Record<string, BadCounts> = Object.fromEntries(
    all.map((n) => [n, { sent: 0, statuses: {}, clientErrors: 0 }]),
  );
  const times: Record<string, number[]> = Object.fromEntries(all.map((n) => [n, []]));
  let next = 0;
  await Promise.all([
    ...Array.from({ length: workers }, async () => {
      while (Date.now() < stopAt) {
        const name = names[next++ % names.length];
        await loop(counts[name], times[name], () => kinds[name](port));
      }
    }),
    ...Object.entries(hostiles).flatMap(([name, k]) =>
      Array.from({ length: k.loops }, async () => {
        while (Date.now() < stopAt) await loop(counts[name], times[name], () => k.send(port));
      }),
    ),
  ]);
  return Object.fromEntries(all.map((n) => [n, withLatency(counts[n], times[n])]));
}

// --- the run ------------------------------------------------------------------------------

/**
 * --engines: the same load against `serve --engine tfjs` and `serve --engine onnx`, one after
 * the other in one run (this machine is shared: only figures from one run compare).
 */
async function compareEngines(model: string, connections: number, seconds: number): Promise<number> {
  const png = await testImagePng();
  const rows: Record<string, unknown>[] = [];
  for (const engine of ['tfjs', 'onnx']) {
    const { server, ready } = startServer(model, ['--engine', engine]);
    try {
      const url = await ready;
      const post = () =>
        fetch(`${url}/api/predict`, {
          method: 'POST',
          body: new Uint8Array(png),
          headers: { 'content-type': 'image/png' },
        });
      for (let i = 0; i < 50; i++) await (await post()).arrayBuffer();
      const r = await autocannon({
        url: `${url}/api/predict`,
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: png,
        connections,
        duration: seconds,
      });
      rows.push({
        engine,
        requestsPerSecond: r.requests.average,
        latencyMs: { p50: r.latency.p50, p99: r.latency.p99 },
        errors: r.errors + r.timeouts + r.non2xx,
        rssMb: +rssMb(server.pid!).toFixed(1),
      });
    } finally {
      server.kill('SIGTERM');
    }
  }
  const [tfjs, onnx] = rows as { requestsPerSecond: number; latencyMs: { p99: number }; errors: number }[];
  const summary = {
    command: `npx tsx bench/serve-load.ts --engines --seconds ${seconds} --connections ${connections}`,
    date: new Date().toISOString(),
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
    engines: rows,
    onnxOverTfjs: {
      requestsPerSecond: +(onnx.requestsPerSecond / tfjs.requestsPerSecond).toFixed(2),
      p99: +(onnx.latencyMs.p99 / tfjs.latencyMs.p99).toFixed(2),
    },
  };
  const out = path.resolve(arg('out', path.join(ROOT, 'bench', 'results', 'serve-load-engines.json')));
  await writeFileAtomic(out, JSON.stringify(summary, null, 2) + '\n');
  console.log(JSON.stringify(summary, null, 2));
  return tfjs.errors + onnx.errors > 0 ? 1 : 0;
}

async function main(): Promise<number> {
  if (flag('engines')) {
    const seconds = Number(arg('seconds', process.env.SERVE_LOAD_SECONDS ?? '10'));
    return compareEngines(benchModel(), Number(arg('connections', '50')), seconds);
  }
  const mixed = flag('mixed');
  const connections = Number(arg('connections', '50'));
  const seconds = Number(
    arg('seconds', arg('duration', process.env.SERVE_LOAD_SECONDS ?? (mixed ? '60' : '10'))),
  );
  const badWorkers = Number(arg('bad-workers', '4'));
  const out = path.resolve(
    arg('out', path.join(ROOT, 'bench', 'results', mixed ? 'serve-load-mixed.json' : 'serve-load.json')),
  );
  const model = benchModel();
  const { server, ready } = startServer(model);
  let exited: string | undefined;
  server.on('exit', (code, signal) => (exited = `exit code ${code}, signal ${signal}`));
  try {
    const url = await ready;
    const port = Number(new URL(url).port);
    // The request body: Fashion-MNIST test image 0 as the PNG the server hands out.
    const png = await testImagePng();
    const rssStart = rssMb(server.pid!);
    const post = () =>
      fetch(`${url}/api/predict`, {
        method: 'POST',
        body: new Uint8Array(png),
        headers: { 'content-type': 'image/png' },
      });
    // Warm-up: first calls compile kernels and fill allocator pools; growth is measured after it.
    for (let i = 0; i < 50; i++) await (await post()).arrayBuffer();
    if (mixed) await badTraffic(port, png, 1, Date.now() + 1000);
    const rssBefore = rssMb(server.pid!);
    let rssPeak = rssBefore;
    const t0 = Date.now();
    /** RSS every second of the run: growth that levels off is warm-up, growth that keeps on is a leak. */
    const rssTimeline: [number, number][] = [];
    const sampler = setInterval(() => {
      if (exited) return;
      const rss = rssMb(server.pid!);
      rssPeak = Math.max(rssPeak, rss);
      rssTimeline.push([Math.round((Date.now() - t0) / 1000), +rss.toFixed(1)]);
    }, 1000);
    const stopAt = Date.now() + seconds * 1000;
    const [result, bad] = await Promise.all([
      autocannon({
        url: `${url}/api/predict`,
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: png,
        connections,
        duration: seconds,
      }),
      mixed ? badTraffic(port, png, badWorkers, stopAt, true) : Promise.resolve(undefined),
    ]);
    clearInterval(sampler);
    const rssAfter = exited ? NaN : rssMb(server.pid!);
    const check = exited ? undefined : await post().catch(() => undefined);
    const health = exited ? undefined : await fetch(`${url}/api/health`).catch(() => undefined);
    const healthy = check?.ok === true && health?.ok === true;
    // The server's own count: requests refused as busy (503) and dropped for a gone client.
    const inference = healthy ? ((await health!.json()) as { inference?: unknown }).inference : undefined;
    const args = mixed ? `--mixed --seconds ${seconds} --bad-workers ${badWorkers}` : `--seconds ${seconds}`;
    const summary = {
      command: `npx tsx bench/serve-load.ts ${args} --connections ${connections}`,
      date: new Date().toISOString(),
      machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
      body: `Fashion-MNIST test image 0, ${png.length}-byte PNG, raw body (Content-Type image/png)`,
      connections,
      durationSeconds: seconds,
      requests: result.requests.total,
      requestsPerSecond: result.requests.average,
      latencyMs: {
        p50: result.latency.p50,
        p90: result.latency.p90,
        p99: result.latency.p99,
        max: result.latency.max,
      },
      errors: result.errors,
      timeouts: result.timeouts,
      non2xx: result.non2xx,
      ...(bad && {
        badWorkers,
        badRequests: bad,
        badRequestsTotal: Object.values(bad).reduce((s, c) => s + c.sent, 0),
      }),
      rssMb: {
        start: +rssStart.toFixed(1),
        beforeLoad: +rssBefore.toFixed(1),
        peak: +rssPeak.toFixed(1),
        afterLoad: +rssAfter.toFixed(1),
        growth: +(rssAfter - rssBefore).toFixed(1),
        timeline: rssTimeline.map(([t, mb]) => `${t}s ${mb}`).join(', '),
      },
      serverExited: exited ?? null,
      serverHealthyAfter: healthy,
      serverInference: inference ?? null,
    };
    await writeFileAtomic(out, JSON.stringify(summary, null, 2) + '\n');
    console.log(JSON.stringify(summary, null, 2));
    const failed = summary.errors + summary.timeouts + summary.non2xx;
    const bad500 = Object.values(bad ?? {}).reduce((s, c) => s + (c.statuses['500'] ?? 0), 0);
    if (failed > 0 || bad500 > 0 || exited || !healthy || !(summary.rssMb.growth <= MAX_GROWTH_MB)) {
      console.error(
        `serve-load: FAILED (${failed} failed good requests, ${bad500} bad requests answered 500, ` +
          `server ${exited ?? (healthy ? 'healthy' : 'unhealthy')}, RSS growth ${summary.rssMb.growth} MB)`,
      );
      return 1;
    }
    return 0;
  } finally {
    server.removeAllListeners('exit');
    server.kill('SIGTERM');
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`serve-load: ${err.message}`);
    process.exit(1);
  },
);
