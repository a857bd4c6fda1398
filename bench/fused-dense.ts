/**
 * A/B of the fused dense training step against the unfused tfjs step, for the seed's model and
 * settings (softmax regression, SGD lr 0.1, batch 256, seed 0) on Fashion-MNIST, in one process
 * on the wasm backend: rounds of a 2-epoch run each way through trainRun (what `imgclf train`
 * runs), alternating which goes first, so a busy machine slows both alike. Then, when Debian's
 * python3-torch is installed, the seed's PyTorch pipeline (../shared/reference/seed_reference.py)
 * for the same number of epochs.
 *
 *   npx tsx bench/fused-dense.ts [--rounds N] [--epochs E] [--no-torch]
 *
 * Prints every round's second-epoch seconds (wall, and CPU), the medians, the ratios, the final test accuracy of a
 * 5-epoch fused run (the default --epochs; it must stay 0.8042 +- 0.002) and the load average,
 * as text and as one JSON line at the end.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../src/backend/index.js';
import { create } from '../src/core/models/index.js';
import { resolveConfig } from '../src/core/plan.js';
import { trainRun } from '../src/core/train/run.js';
import { loadDataset } from '../src/node/data/load.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SEED_SCRIPT = path.resolve(ROOT, '..', 'shared', 'reference', 'seed_reference.py');
const args = process.argv.slice(2);
const flag = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const rounds = flag('--rounds', 7);
const epochs = flag('--epochs', 5);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const load = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

await selectBackend('wasm');
const { dataset } = await loadDataset({ dataset: 'fashion-mnist' });
const data = { train: dataset.train, test: dataset.test, shape: dataset.shape };

/**
 * Trains the seed's model for `n` epochs, fused or not: per epoch the training pass's wall
 * seconds, and the process's CPU seconds from the end of the epoch before to the end of this
 * one (training pass and evaluation), which a busy machine disturbs less than wall time.
 */
async function train(
  fused: boolean,
  n: number,
): Promise<{ seconds: number[]; cpu: number[]; accuracy: number }> {
  const plan = resolveConfig({ model: 'softmax', epochs: n, seed: 0, fused });
  const net = create('softmax', { inputShape: dataset.shape, numClasses: 10, seed: plan.seed });
  const cpu: number[] = [];
  let last = process.cpuUsage();
  try {
    const { history } = await trainRun(net, plan, data, [
      {
        onEpoch: () => {
          const used = process.cpuUsage(last);
          cpu.push((used.user + used.system) / 1e6);
          last = process.cpuUsage();
        },
      },
    ]);
    return { seconds: history.map((m) => m.seconds), cpu, accuracy: history.at(-1)!.test_accuracy };
  } finally {
    net.dispose();
  }
}

const loadBefore = load();
console.log(`load average before: ${loadBefore} (${os.cpus().length} cores)`);
// One round each way to warm up the JIT and both code paths; not counted.
await train(true, 1);
await train(false, 1);
// Each round trains two epochs each way and keeps the second: the first also pays one-time
// costs (the fused step copies the byte split into its memory, 47 MB, once per run).
type Which = 'fused' | 'unfused';
const times: Record<Which, number[]> = { fused: [], unfused: [] };
const cpuTimes: Record<Which, number[]> = { fused: [], unfused: [] };
for (let r = 0; r < rounds; r++) {
  const order: Which[] = r % 2 ? ['unfused', 'fused'] : ['fused', 'unfused'];
  for (const which of order) {
    const { seconds, cpu } = await train(which === 'fused', 2);
    times[which].push(seconds[1]);
    cpuTimes[which].push(cpu[1]);
  }
  console.log(
    `round ${r + 1}: fused ${times.fused.at(-1)!.toFixed(3)} s (cpu ${cpuTimes.fused.at(-1)!.toFixed(3)}), ` +
      `unfused ${times.unfused.at(-1)!.toFixed(3)} s (cpu ${cpuTimes.unfused.at(-1)!.toFixed(3)})`,
  );
}
const fusedMedian = median(times.fused);
const unfusedMedian = median(times.unfused);
const fusedCpu = median(cpuTimes.fused);
const unfusedCpu = median(cpuTimes.unfused);
console.log(
  `median s/epoch (training pass, wall): fused ${fusedMedian.toFixed(3)}, unfused ${unfusedMedian.toFixed(3)}: ` +
    `the fused step is ${(unfusedMedian / fusedMedian).toFixed(2)}x faster`,
);
console.log(
  `median CPU s/epoch (training pass + evaluation): fused ${fusedCpu.toFixed(3)}, unfused ${unfusedCpu.toFixed(3)}: ` +
    `${(unfusedCpu / fusedCpu).toFixed(2)}x`,
);

const full = await train(true, epochs);
console.log(
  `fused, ${epochs} epochs: test accuracy ${full.accuracy}, epochs ${full.seconds.map((s) => s.toFixed(3)).join(' ')} s`,
);

let torch: { median: number; seconds: number[]; accuracy: number } | string;
if (args.includes('--no-torch')) torch = 'skipped (--no-torch)';
else if (!existsSync(SEED_SCRIPT)) torch = `${SEED_SCRIPT} not found`;
else if (spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision']).status !== 0)
  torch =
    'python3-torch / python3-torchvision not installed (apt-get install -y python3-torch python3-torchvision)';
else {
  // The seed pipeline prints one JSON line: {"epochs": [{"seconds", "test_accuracy"}, ...]}.
  const r = spawnSync('/usr/bin/python3', [SEED_SCRIPT, String(Math.min(epochs, 3)), '--json'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !line.startsWith('{')) torch = `seed pipeline failed: ${r.stderr.slice(-300)}`;
  else {
    const j = JSON.parse(line) as { epochs: { seconds: number; test_accuracy: number }[] };
    const seconds = j.epochs.map((e) => e.seconds);
    torch = { median: median(seconds), seconds, accuracy: j.epochs.at(-1)!.test_accuracy };
  }
}
if (typeof torch === 'string') console.log(`seed PyTorch pipeline: ${torch}`);
else
  console.log(
    `seed PyTorch pipeline: median ${torch.median.toFixed(3)} s/epoch; ` +
      `fused ${(torch.median / fusedMedian).toFixed(1)}x, unfused ${(torch.median / unfusedMedian).toFixed(1)}x faster`,
  );
const loadAfter = load();
console.log(`load average after: ${loadAfter}`);
console.log(
  JSON.stringify({
    date: new Date().toISOString(),
    cores: os.cpus().length,
    load_before: loadBefore,
    load_after: loadAfter,
    rounds,
    fused_seconds: times.fused,
    unfused_seconds: times.unfused,
    fused_median: fusedMedian,
    unfused_median: unfusedMedian,
    speedup: unfusedMedian / fusedMedian,
    fused_cpu_seconds: cpuTimes.fused,
    unfused_cpu_seconds: cpuTimes.unfused,
    fused_cpu_median: fusedCpu,
    unfused_cpu_median: unfusedCpu,
    fused_epochs: epochs,
    fused_test_accuracy: full.accuracy,
    seed_pytorch: torch,
  }),
);
