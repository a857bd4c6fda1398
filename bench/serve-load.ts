/**
 * Load benchmark for `imgclf serve`: POST /api/predict over loopback from 50 concurrent
 * connections for 10 s (autocannon), with the server's resident memory before and after.
 *
 *   npx tsx bench/serve-load.ts [--model DIR] [--connections 50] [--duration 10]
 *
 * Without --model it trains a 1-epoch softmax run into a temporary folder first. The server
 * runs as its own process, started exactly as a user starts it, so its RSS is read from
 * /proc/PID/status. Writes bench/results/serve-load.json; exits 1 when any request failed or
 * RSS grew by more than 50 MB.
 */
import autocannon from 'autocannon';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../src/node/fs.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'imgclf.js');
const MAX_GROWTH_MB = 50;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return kb / 1024;
}

async function main(): Promise<number> {
  const connections = Number(arg('connections', '50'));
  const duration = Number(arg('duration', '10'));
  let model = arg('model', '');
  if (!model) {
    model = path.join(mkdtempSync(path.join(os.tmpdir(), 'imgclf-bench-')), 'run');
    const r = spawnSync(process.execPath, [BIN, 'train', '--epochs', '1', '--out', model], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`training the benchmark model failed: ${r.stderr}`);
  }
  const server = spawn(process.execPath, [BIN, 'serve', '--model', model, '--port', '0', '--json'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve((JSON.parse(line) as { url: string }).url);
      });
      server.on('exit', (code) => reject(new Error(`imgclf serve exited with ${code}`)));
    });
    // The request body: Fashion-MNIST test image 0 as the PNG the server itself hands out.
    const png = Buffer.from(await (await fetch(`${url}/api/data/test/image/0`)).arrayBuffer());
    const rssStart = rssMb(server.pid!);
    const post = () =>
      fetch(`${url}/api/predict`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
    // Warm-up: first calls compile kernels and fill allocator pools; growth is measured after it.
    for (let i = 0; i < 50; i++) await (await post()).arrayBuffer();
    const rssBefore = rssMb(server.pid!);
    const result = await autocannon({
      url: `${url}/api/predict`,
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: png,
      connections,
      duration,
    });
    const rssAfter = rssMb(server.pid!);
    const check = await post();
    const summary = {
      command: `npx tsx bench/serve-load.ts --connections ${connections} --duration ${duration}`,
      date: new Date().toISOString(),
      machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
      body: `Fashion-MNIST test image 0, ${png.length}-byte PNG, raw body (Content-Type image/png)`,
      connections,
      durationSeconds: duration,
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
      rssMb: {
        start: +rssStart.toFixed(1),
        beforeLoad: +rssBefore.toFixed(1),
        afterLoad: +rssAfter.toFixed(1),
        growth: +(rssAfter - rssBefore).toFixed(1),
      },
      serverHealthyAfter: check.ok,
    };
    await writeFileAtomic(
      path.join(ROOT, 'bench', 'results', 'serve-load.json'),
      JSON.stringify(summary, null, 2) + '\n',
    );
    console.log(JSON.stringify(summary, null, 2));
    const failed = summary.errors + summary.timeouts + summary.non2xx;
    if (failed > 0 || summary.rssMb.growth > MAX_GROWTH_MB || !check.ok) {
      console.error(`serve-load: FAILED (${failed} failed requests, RSS growth ${summary.rssMb.growth} MB)`);
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
