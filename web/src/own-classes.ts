/**
 * Your own classes: name two or more, add pictures to each (upload, drop, or hold a button to
 * capture webcam frames), remove the ones that do not belong, and train on them in the page
 * with live curves, a stop button and the accuracy on held-out images. The plan is the CLI's
 * (own-train.ts `ownPlan`: pagePlan + sizeToData); the model becomes the page's own model
 * (own-model.ts), which the try and keep parts use.
 *
 * With a backbone (chosen by URL or opened from files, backbone.ts), the pictures are prepared
 * at its input shape, turned into its feature vectors, and a head (softmax, mlp or knn) trains
 * on those, as `imgclf train --backbone` does; the run records the backbone.
 */
import { evaluate, folderPreprocessing, listModels } from 'imgclf/core';
import { holdToRepeat, type Camera } from './camera.js';
import { $, acceptFiles } from './dom.js';
import { clearShown, show, t } from './i18n.js';
import { onLangChange } from './lang.js';
import { type BackboneChoice, loadBackbone, type PageBackbone } from './backbone.js';
import { backboneInUse, setChosenBackbone, setOwnModel } from './own-model.js';
import {
  backboneFeatures,
  backboneImages,
  classNameProblem,
  folderOrder,
  heldOutSplit,
  type LabelledImage,
  MAX_OWN_CLASSES,
  MIN_IMAGES_PER_CLASS,
  OWN_DEFAULT_SIZE,
  OWN_HEADS,
  OWN_MODELS,
  OWN_SIZES,
  ownImages,
  ownPlan,
  ownRunMetadata,
  ownShape,
  PIXELS,
  splitOf,
} from './own-train.js';
import { decode, preparePixels, snapshot } from './pixels.js';
import { pagePlan, trainInPage } from './train.js';
import { lineChart } from './train-panel.js';

/** A webcam frame is captured this often while the capture button is held. */
export const CAPTURE_EVERY_MS = 100;
/** Webcam frames are kept at most this many pixels a side. */
const FRAME_SIDE = 320;
/** Batches between two points of the live curves. */
const PROBE_EVERY = 4;
const FIRST_CLASSES = 2;

interface Sample {
  blob: Blob;
  /** Object URL of the thumbnail. */
  url: string;
  /** Prepared pixels by input shape ("32x32x3"). */
  prepared: Map<string, Uint8Array>;
  /** What it came from, for messages. */
  name: string;
}

interface OwnClass {
  card: HTMLElement;
  samples: Sample[];
}

export interface OwnClassesDeps {
  camera: Camera;
  /** The TensorFlow.js backend in use. */
  backend: () => string;
}

export function setUpOwnClasses({ camera, backend }: OwnClassesDeps): void {
  const classes: OwnClass[] = [];
  const container = $('own-classes');
  const template = $<HTMLTemplateElement>('own-class-template');
  const error = $('own-error');
  const lossChart = lineChart('own-loss-chart');
  const accChart = lineChart('own-acc-chart', 1);
  let stop = false;
  let training = false;
  /** The backbone loaded under Backbone, when one is chosen and loaded. */
  let backbone: PageBackbone | undefined;
  /** Counts loads, so that a slow one finishing after a newer choice is dropped. */
  let backboneLoads = 0;

  const nameInput = (c: OwnClass) => c.card.querySelector<HTMLInputElement>('.own-class-name')!;

  function relabelCard(c: OwnClass): void {
    const i = classes.indexOf(c) + 1;
    nameInput(c).placeholder = t('classNamePlaceholder', { i });
    c.card.querySelector<HTMLElement>('.own-class-remove')!.title = t('removeClass');
    for (const el of c.card.querySelectorAll<HTMLElement>('[data-i18n]'))
      el.textContent = t(el.dataset.i18n as Parameters<typeof t>[0]);
    for (const b of c.card.querySelectorAll<HTMLElement>('.own-thumb button')) b.title = t('removeImage');
    show(c.card.querySelector('.own-class-count')!, 'imageCount', { n: c.samples.length });
  }

  function updateButtons(): void {
    for (const c of classes) {
      c.card.querySelector<HTMLButtonElement>('.own-class-capture')!.disabled = !camera.on;
      c.card.querySelector<HTMLButtonElement>('.own-class-remove')!.disabled =
        classes.length <= FIRST_CLASSES;
    }
    $<HTMLButtonElement>('own-add-class').disabled = classes.length >= MAX_OWN_CLASSES;
    $<HTMLButtonElement>('own-train').disabled = training;
    $<HTMLButtonElement>('own-stop').disabled = !training;
    // A training holds its backbone to the end: another is chosen after it.
    for (const id of ['own-backbone-kind', 'own-backbone-load', 'own-backbone-files'])
      $<HTMLInputElement>(id).disabled = training;
  }

  function addSample(c: OwnClass, blob: Blob, name: string): void {
    const sample: Sample = { blob, url: URL.createObjectURL(blob), prepared: new Map(), name };
    c.samples.push(sample);
    const fig = document.createElement('figure');
    fig.className = 'own-thumb';
    const img = document.createElement('img');
    img.src = sample.url;
    img.alt = name;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = '×';
    remove.title = t('removeImage');
    remove.addEventListener('click', () => {
      c.samples.splice(c.samples.indexOf(sample), 1);
      URL.revokeObjectURL(sample.url);
      fig.remove();
      relabelCard(c);
    });
    fig.append(img, remove);
    c.card.querySelector('.own-thumbs')!.append(fig);
    relabelCard(c);
  }

  /** Adds the files that decode as images; the others are named in the error line. */
  async function addFiles(c: OwnClass, files: Iterable<File>): Promise<void> {
    const bad: string[] = [];
    for (const file of files) {
      try {
        (await decode(file)).close();
        addSample(c, file, file.name);
      } catch {
        bad.push(file.name);
      }
    }
    if (bad.length) show(error, 'notImages', { files: bad.join(', ') });
  }

  function addClass(): OwnClass {
    const card = (template.content.firstElementChild as HTMLElement).cloneNode(true) as HTMLElement;
    const c: OwnClass = { card, samples: [] };
    classes.push(c);
    container.append(card);
    acceptFiles(card.querySelector<HTMLInputElement>('.own-class-files')!, card, (files) =>
      addFiles(c, files),
    );
    let frames = 0;
    holdToRepeat(card.querySelector<HTMLElement>('.own-class-capture')!, CAPTURE_EVERY_MS, () => {
      if (!camera.on) return;
      const n = ++frames;
      snapshot(camera.video, FRAME_SIDE).then(
        (blob) => addSample(c, blob, `camera-${n}.jpg`),
        (err: Error) => show(error, 'captureFailed', { message: err.message }),
      );
    });
    card.querySelector('.own-class-remove')!.addEventListener('click', () => {
      if (classes.length <= FIRST_CLASSES) return;
      classes.splice(classes.indexOf(c), 1);
      for (const s of c.samples) URL.revokeObjectURL(s.url);
      card.remove();
      classes.forEach(relabelCard);
      updateButtons();
    });
    relabelCard(c);
    updateButtons();
    return c;
  }

  /** The class names in folder order, or undefined after showing what is wrong. */
  function checkClasses(): string[] | undefined {
    const names = classes.map((c) => nameInput(c).value.trim());
    for (const [i, name] of names.entries()) {
      const problem = classNameProblem(name, names.slice(0, i));
      if (problem === 'empty') return void show(error, 'classNeedsName', { i: i + 1 });
      if (problem === 'duplicate') return void show(error, 'classDuplicate', { name });
      if (problem === 'badName') return void show(error, 'classBadName', { name });
      const n = classes[i].samples.length;
      if (n < MIN_IMAGES_PER_CLASS)
        return void show(error, 'classNeedsImages', { name, n, min: MIN_IMAGES_PER_CLASS });
    }
    return folderOrder(names);
  }

  function resetCharts(): void {
    for (const c of [lossChart, accChart]) {
      for (const d of c.data.datasets) d.data = [];
      c.update();
    }
    delete lossChart.canvas.dataset.probes;
    delete lossChart.canvas.dataset.epochs;
  }

  function relabelCharts(): void {
    lossChart.data.datasets[0].label = t('probeLoss');
    lossChart.data.datasets[1].label = t('heldOutLoss');
    accChart.data.datasets[0].label = t('probeAcc');
    accChart.data.datasets[1].label = t('heldOutAcc');
    for (const c of [lossChart, accChart]) {
      (c.options.scales!.x as { title: { text: string } }).title.text = t('epochAxis');
      c.update();
    }
  }

  async function startTraining(): Promise<void> {
    clearShown(error);
    const status = $('own-status');
    delete status.dataset.state;
    const order = checkClasses();
    if (!order) return;
    if ($<HTMLSelectElement>('own-backbone-kind').value !== 'none' && !backbone)
      return void show(error, 'backboneNeeded');
    training = true;
    stop = false;
    updateButtons();
    const acc = $('own-heldout-acc');
    acc.textContent = '–';
    delete acc.dataset.value;
    resetCharts();
    // The backbone as chosen when training starts (a new choice meanwhile is for the next run).
    const bb = backbone;
    try {
      const size = Number($<HTMLSelectElement>('own-size').value) || OWN_DEFAULT_SIZE;
      const images = bb ? backboneImages(bb.record) : ownImages(size);
      const shape = ownShape(images);
      const key = shape.join('x');
      const pre = folderPreprocessing(images.resizeMode);
      const labelled: LabelledImage[] = [];
      const total = classes.reduce((s, c) => s + c.samples.length, 0);
      for (const c of classes) {
        const label = order.indexOf(nameInput(c).value.trim());
        for (const s of c.samples) {
          let pixels = s.prepared.get(key);
          if (!pixels) {
            const bitmap = await decode(s.blob).catch((err: Error) => {
              throw new Error(`${s.name}: ${err.message}`);
            });
            pixels = preparePixels(bitmap, shape, pre).pixels;
            bitmap.close();
            s.prepared.set(key, pixels);
          }
          labelled.push({ label, pixels });
          show(status, 'preparing', { done: labelled.length, total });
        }
      }
      const epochsField = $<HTMLInputElement>('own-epochs').value.trim();
      const model = $<HTMLSelectElement>('own-model').value;
      const choice = {
        model,
        epochs: epochsField === '' ? undefined : Number(epochsField),
        ...(bb ? { backbone: bb.record.source } : {}),
      };
      // Held out with the plan's seed, as `imgclf train --data` holds out part of a folder. The
      // images are split (the split depends on the labels and the seed alone), then each part
      // becomes what the model takes: the images (and they are what a downloaded run keeps).
      const { seed } = pagePlan({ ...choice, images });
      const pictures = heldOutSplit(splitOf(labelled, shape), shape, order.length, images.heldOut, seed);
      let featured = 0;
      const features = bb
        ? backboneFeatures(bb, (done, n) => {
            show(status, 'featuring', { done: featured + done, total: labelled.length });
            if (done === n) featured += n;
          })
        : PIXELS;
      const inputShape = features.shape(shape);
      const train = await features.apply(pictures.train, shape);
      const test = await features.apply(pictures.test, shape);
      const { plan, note } = ownPlan(choice, images, train.count);
      const steps = plan.epochs * Math.ceil(train.count / plan.batchSize);
      show($('own-plan'), bb ? 'ownPlanHead' : 'ownPlan', {
        train: train.count,
        test: test.count,
        model: plan.model,
        batch: plan.batchSize,
        epochs: plan.epochs,
        steps,
        features: inputShape[2],
      });
      const begin = performance.now();
      const { model: net, history } = await trainInPage({
        plan,
        shape: inputShape,
        numClasses: order.length,
        train,
        test,
        probeEvery: PROBE_EVERY,
        shouldStop: () => stop,
        onProgress: (epoch, done, all) =>
          show(status, 'training', { epoch, epochs: plan.epochs, done, total: all }),
        onProbe: (x, loss, accuracy) => {
          lossChart.data.datasets[0].data.push({ x, y: loss });
          accChart.data.datasets[0].data.push({ x, y: accuracy });
          lossChart.update();
          accChart.update();
          lossChart.canvas.dataset.probes = String(lossChart.data.datasets[0].data.length);
        },
        onEpoch: (m) => {
          lossChart.data.datasets[1].data.push({ x: m.epoch, y: m.test_loss });
          accChart.data.datasets[1].data.push({ x: m.epoch, y: m.test_accuracy });
          lossChart.update();
          accChart.update();
          lossChart.canvas.dataset.epochs = String(m.epoch);
          acc.textContent = m.test_accuracy.toFixed(3);
        },
      });
      const seconds = (performance.now() - begin) / 1000;
      // The model as it ends (a stop mid-epoch included), on the held-out images.
      const heldOut = (await evaluate(net, test)).accuracy;
      acc.textContent = heldOut.toFixed(3);
      acc.dataset.value = String(heldOut);
      const metadata = ownRunMetadata({
        plan,
        note,
        images,
        classNames: order,
        backend: backend(),
        testAccuracy: heldOut,
        ...(bb ? { backbone: bb.record } : {}),
      });
      setOwnModel({
        net,
        ...(bb ? { backbone: bb } : {}),
        metadata,
        metrics: history,
        // The pictures (at the model's input shape), which a downloaded run keeps in data/.
        data: pictures,
        name: order.join(' · '),
        origin: 'trained',
      });
      status.dataset.seconds = seconds.toFixed(2);
      show(status, stop ? 'ownStopped' : 'ownFinished', {
        epochs: history.length,
        seconds: seconds.toFixed(1),
        backend: backend(),
        acc: heldOut.toFixed(3),
        n: test.count,
      });
      status.dataset.state = 'done';
    } catch (err) {
      show(status, 'failed', { message: (err as Error).message });
      status.dataset.state = 'failed';
    } finally {
      training = false;
      updateButtons();
    }
  }

  /** The models on offer: the page's own, or with a backbone the heads. */
  function fillModels(): void {
    const select = $<HTMLSelectElement>('own-model');
    const offered: readonly string[] = backbone ? OWN_HEADS : OWN_MODELS;
    const chosen = offered.includes(select.value) ? select.value : offered[0];
    const registered = new Map(listModels().map((e) => [e.name, e]));
    select.replaceChildren(
      ...offered
        .filter((m) => registered.has(m))
        .map((name) => {
          const opt = document.createElement('option');
          opt.value = name;
          opt.textContent = name;
          opt.title = registered.get(name)?.description ?? '';
          return opt;
        }),
    );
    select.value = chosen;
  }

  /** The image sizes on offer: the page's, or with a backbone its input size alone. */
  function fillSizes(): void {
    const select = $<HTMLSelectElement>('own-size');
    const sizes: readonly number[] = backbone ? [backbone.record.inputShape[0]] : OWN_SIZES;
    const chosen = sizes.includes(Number(select.value)) ? select.value : String(sizes[0] ?? OWN_DEFAULT_SIZE);
    select.replaceChildren(
      ...sizes.map((n) => {
        const opt = document.createElement('option');
        opt.value = String(n);
        opt.textContent = t('sizeOption', { n });
        return opt;
      }),
    );
    select.value = chosen;
  }

  const backboneStatus = $('own-backbone-status');

  /** Makes `b` the backbone training uses (undefined: none); the one before is released if unused. */
  function useBackbone(b: PageBackbone | undefined): void {
    const old = backbone;
    backbone = b;
    setChosenBackbone(b);
    if (old && old !== b && !backboneInUse(old)) old.dispose();
    // The backbone decides the image size.
    $<HTMLSelectElement>('own-size').disabled = b !== undefined;
    fillModels();
    fillSizes();
  }

  async function chooseBackbone(choice: BackboneChoice, name: string): Promise<void> {
    const n = ++backboneLoads;
    useBackbone(undefined);
    delete backboneStatus.dataset.state;
    show(backboneStatus, 'backboneLoading', { source: name });
    try {
      const b = await loadBackbone(choice);
      if (n !== backboneLoads) return void b.dispose();
      useBackbone(b);
      const r = b.record;
      show(backboneStatus, 'backboneReady', {
        source: r.source,
        format: r.format,
        family: r.family,
        shape: r.inputShape.join('x'),
        features: r.features,
        engine: b.engine,
      });
      backboneStatus.dataset.state = 'ready';
    } catch (err) {
      if (n !== backboneLoads) return;
      show(backboneStatus, 'backboneFailed', { message: (err as Error).message.split('\n')[0] });
      backboneStatus.dataset.state = 'failed';
    }
  }

  function setUpBackbone(): void {
    const kind = $<HTMLSelectElement>('own-backbone-kind');
    const urlRow = $('own-backbone-url-row');
    const filesRow = $('own-backbone-files-row');
    const url = $<HTMLInputElement>('own-backbone-url');
    // No backbone is loaded yet, whatever the browser restored into the form on a reload.
    kind.value = 'none';
    kind.addEventListener('change', () => {
      urlRow.hidden = kind.value !== 'url';
      filesRow.hidden = kind.value !== 'files';
      backboneLoads++;
      useBackbone(undefined);
      clearShown(backboneStatus);
      delete backboneStatus.dataset.state;
    });
    const loadUrl = () => {
      const given = url.value.trim();
      if (given) void chooseBackbone({ url: given }, given);
    };
    $('own-backbone-load').addEventListener('click', loadUrl);
    url.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') loadUrl();
    });
    const files = $<HTMLInputElement>('own-backbone-files');
    files.addEventListener('change', () => {
      const picked = [...(files.files ?? [])];
      files.value = '';
      if (picked.length) void chooseBackbone({ files: picked }, picked.map((f) => f.name).join(', '));
    });
    url.placeholder = t('backboneUrlPlaceholder');
  }

  for (let i = 0; i < FIRST_CLASSES; i++) addClass();
  setUpBackbone();
  fillModels();
  fillSizes();
  $<HTMLInputElement>('own-epochs').placeholder = t('auto');
  $('own-add-class').addEventListener('click', () => addClass());
  $('own-train-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void startTraining();
  });
  $('own-stop').addEventListener('click', () => (stop = true));
  camera.onChange(updateButtons);
  relabelCharts();
  onLangChange(() => {
    classes.forEach(relabelCard);
    relabelCharts();
    fillSizes();
    $<HTMLInputElement>('own-epochs').placeholder = t('auto');
    $<HTMLInputElement>('own-backbone-url').placeholder = t('backboneUrlPlaceholder');
  });
}
