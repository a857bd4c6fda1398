/**
 * Trying the page's own model: upload or drop a picture, draw one, or classify the camera
 * live; the three likeliest classes are shown with their probabilities. Pictures are prepared
 * in the page as `imgclf predict` prepares them (pixels.ts), for the model's input shape and
 * preprocessing, so a run read from files (a Fashion-MNIST one too) works the same way.
 */
import { displayName, inputFromBytes, predictProbabilities, topK } from 'imgclf/core';
import type { Camera } from './camera.js';
import { $, acceptFiles } from './dom.js';
import { clearShown, getLang, show, t } from './i18n.js';
import { onLangChange } from './lang.js';
import { onOwnModel, type OwnModel, ownModel } from './own-model.js';
import { decode, type Picture, pixelsCanvas, preparePixels } from './pixels.js';
import { attachDrawing } from './draw.js';

/** Live classification takes a frame this often (and never two at once). */
const LIVE_EVERY_MS = 150;
const SHOWN = 3;

export interface Ranked {
  label: string;
  probability: number;
}

/**
 * The model's top classes for a picture, and the input it saw (H * W * C bytes). With a
 * backbone the picture becomes its feature vector first (asynchronous: ONNX Runtime Web runs
 * asynchronously), which the head classifies.
 */
export async function classify(
  model: OwnModel,
  picture: Picture,
): Promise<{ top: Ranked[]; pixels: Uint8Array }> {
  const { inputShape, preprocessing, classNames } = model.metadata;
  const { pixels } = preparePixels(picture, inputShape, preprocessing);
  const input = inputFromBytes(pixels, preprocessing);
  let p: Float32Array;
  if (model.backbone) {
    const features = await model.backbone.features(input, 1);
    [p] = predictProbabilities(model.net, features, 1, [1, 1, features.length]);
  } else [p] = predictProbabilities(model.net, input, 1, inputShape);
  const top = topK(p, Math.min(SHOWN, classNames.length)).map((i) => ({
    label: classNames[i],
    probability: p[i],
  }));
  return { top, pixels };
}

export function setUpOwnTry(camera: Camera): void {
  const list = $<HTMLOListElement>('own-top3');
  const error = $('own-try-error');
  const seen = $<HTMLCanvasElement>('own-seen');
  const draw = $<HTMLCanvasElement>('own-draw');
  const liveButton = $<HTMLButtonElement>('own-live');
  let last: { picture: () => Picture | Promise<Picture>; name: string } | undefined;
  let shown: Ranked[] = [];
  let count = 0;
  let live = false;

  function render(): void {
    list.replaceChildren(
      ...shown.map((r) => {
        const li = document.createElement('li');
        li.dataset.label = r.label;
        li.dataset.probability = String(r.probability);
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = displayName(r.label, getLang());
        const bar = document.createElement('span');
        bar.className = 'bar';
        const fill = document.createElement('span');
        fill.style.width = `${(r.probability * 100).toFixed(1)}%`;
        bar.append(fill);
        const pct = document.createElement('span');
        pct.className = 'pct';
        pct.textContent = `${(r.probability * 100).toFixed(1)}%`;
        li.append(name, bar, pct);
        return li;
      }),
    );
  }

  function describe(model: OwnModel | undefined): void {
    const el = $('own-try-model');
    if (!model) return show(el, 'tryNoModel');
    const m = model.metadata;
    show(el, 'tryModel', {
      name: model.name,
      model: m.model,
      shape: m.inputShape.join('x'),
      classes: m.classNames.length,
      origin: t(
        model.origin === 'trained'
          ? 'originTrained'
          : model.origin === 'kept'
            ? 'originKept'
            : 'originUploaded',
      ),
    });
  }

  async function run(picture: () => Picture | Promise<Picture>, name: string): Promise<void> {
    last = { picture, name };
    const model = ownModel();
    if (!model) return void show(error, 'tryNoModel');
    try {
      const { top, pixels } = await classify(model, await picture());
      // Another model may have come while the backbone computed: its answer is the next one.
      if (ownModel() !== model) return;
      shown = top;
      showInput(pixels, model);
      clearShown(error);
      render();
      list.dataset.picture = name;
      list.dataset.count = String(++count);
    } catch (err) {
      show(error, 'tryFailed', { message: (err as Error).message });
    }
  }

  /** What the model saw: its input, enlarged. */
  function showInput(pixels: Uint8Array, model: OwnModel): void {
    const shape = model.metadata.inputShape;
    seen.width = shape[1];
    seen.height = shape[0];
    seen.getContext('2d')!.drawImage(pixelsCanvas(pixels, shape), 0, 0);
  }

  let bitmap: ImageBitmap | undefined;
  async function tryFile(file: Blob, name: string): Promise<void> {
    let decoded: ImageBitmap;
    try {
      decoded = await decode(file);
    } catch (err) {
      return void show(error, 'tryFailed', { message: `${name}: ${(err as Error).message}` });
    }
    bitmap?.close();
    bitmap = decoded;
    await run(() => decoded, name);
  }

  // Upload and drop.
  acceptFiles($<HTMLInputElement>('own-try-file'), $('own-try-drop'), ([file]) => tryFile(file, file.name));

  // Drawing: dark strokes on white, classified as they are drawn (at most once a frame).
  const ctx = draw.getContext('2d')!;
  const clear = () => {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, draw.width, draw.height);
  };
  clear();
  let queued = false;
  const classifyDrawing = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      void run(() => draw, 'drawing');
    });
  };
  attachDrawing(draw, {
    colour: () => $<HTMLInputElement>('own-draw-colour').value,
    width: 18,
    onStroke: classifyDrawing,
    onEnd: classifyDrawing,
  });
  $('own-draw-clear').addEventListener('click', clear);

  // Live: the camera's frames, one at a time.
  const labelLive = () => (liveButton.textContent = live ? t('liveStop') : t('liveStart'));
  const tick = async () => {
    if (!live) return;
    if (camera.on && ownModel()) await run(() => camera.video, 'camera');
    setTimeout(() => void tick(), LIVE_EVERY_MS);
  };
  liveButton.addEventListener('click', async () => {
    live = !live;
    document.body.dataset.live = String(live);
    labelLive();
    if (live && !(await camera.start())) {
      live = false;
      labelLive();
      return;
    }
    if (live) void tick();
  });
  camera.onChange((on) => {
    if (!on && live) {
      live = false;
      labelLive();
    }
  });

  onOwnModel((model) => {
    describe(model);
    // The last picture again, with the new model (not the camera's: the next frame will come).
    if (last && last.name !== 'camera') void run(last.picture, last.name);
  });
  onLangChange(() => {
    labelLive();
    render();
  });
  labelLive();
  describe(undefined);
}
