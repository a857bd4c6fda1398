/**
 * `imgclf export`: a run's model as an ONNX file for other runtimes (docs/deploy.md), and with
 * --check, how closely ONNX Runtime reproduces the tfjs model on the run's test images.
 */
import type { Command } from 'commander';
import { selectBackend } from '../../backend/index.js';
import { UserError } from '../../core/errors.js';
import {
  checkRunParity,
  defaultOnnxPath,
  exportRunOnnx,
  INPUT_NAME,
  OUTPUT_NAME,
  PARITY_TOLERANCE,
  parityOk,
  type Parity,
} from '../../node/export/index.js';
import { loadRun } from '../../node/run/rundir.js';
import { type GlobalOptions, numberArg, Output } from '../output.js';
import { runDirOf, type RunOptions, withRunOptions } from '../run-options.js';

const FORMATS = ['onnx'];

interface ExportOptions extends RunOptions {
  format: string;
  out?: string;
  check?: boolean;
  checkImages: number;
}

function sizeText(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

function parityText(p: Parity): string {
  return (
    `ONNX Runtime vs tfjs on ${p.images} test images: max |difference| in probability ` +
    `${p.maxAbsDiff.toExponential(2)}, top class agrees on ${p.argmaxAgree}/${p.images}` +
    (p.onnxAccuracy !== undefined ? `; ONNX accuracy on them ${p.onnxAccuracy.toFixed(4)}` : '')
  );
}

export function registerExport(program: Command, globals: () => GlobalOptions): void {
  withRunOptions(
    program
      .command('export')
      .description("export a run's model for other runtimes: an ONNX file (see docs/deploy.md)")
      .option('--format <format>', `output format: ${FORMATS.join(', ')}`, 'onnx')
      .option('--out <file>', 'where to write the file (default: <run>/model.onnx)')
      .option('--check', "compare ONNX Runtime with the tfjs model on the run's test images")
      .option(
        '--check-images <n>',
        'how many test images --check compares',
        numberArg('--check-images', true),
        1000,
      ),
    'folder with the dataset files (for --check)',
  ).action(async (opts: ExportOptions) => {
    const out = new Output(globals());
    if (!FORMATS.includes(opts.format))
      throw new UserError(`unknown --format '${opts.format}'; choose one of: ${FORMATS.join(', ')}`);
    if (opts.checkImages < 1)
      throw new UserError(`--check-images must be at least 1 (got ${opts.checkImages})`);
    const dir = runDirOf(opts);
    const file = opts.out ?? defaultOnnxPath(dir);
    await selectBackend(opts.backend);
    const run = await loadRun(dir, (m) => out.line(m));
    try {
      const result = await exportRunOnnx(run, file);
      const [h, w, c] = result.inputShape;
      out.line(
        `wrote ${file} (ONNX opset ${result.opset}, ${sizeText(result.bytes.length)}, ${result.ops.length} nodes)`,
      );
      out.line(
        `  input '${INPUT_NAME}': float32 [N, ${h}, ${w}, ${c}] (NHWC), pixels / ${run.metadata.preprocessing.scale}`,
      );
      out.line(`  output '${OUTPUT_NAME}': float32 [N, ${result.numClasses}], class names in metadata_props`);
      let parity: Parity | undefined;
      if (opts.check) {
        parity = await checkRunParity(run, result.bytes, { dataDir: opts.dataDir, limit: opts.checkImages });
        out.line(parityText(parity));
        if (!parityOk(parity)) {
          out.line(
            `parity check failed: the difference should be at most ${PARITY_TOLERANCE} with every top class agreeing`,
          );
          process.exitCode = 1;
        }
      }
      out.json({
        path: file,
        format: opts.format,
        model: run.metadata.model,
        opset: result.opset,
        bytes: result.bytes.length,
        input: { name: INPUT_NAME, shape: ['N', h, w, c], layout: 'NHWC' },
        output: { name: OUTPUT_NAME, shape: ['N', result.numClasses] },
        class_names: run.metadata.classNames,
        parity: parity
          ? {
              images: parity.images,
              max_abs_diff: parity.maxAbsDiff,
              argmax_agree: parity.argmaxAgree,
              argmax_agreement: parity.argmaxAgree / parity.images,
              onnx_accuracy: parity.onnxAccuracy ?? null,
              ok: parityOk(parity),
            }
          : null,
      });
    } finally {
      run.model.dispose();
    }
  });
}
