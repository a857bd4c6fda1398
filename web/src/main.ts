/** The imgclf page: classify (upload, drop, draw), browse the gallery, train in the browser. */
import { Chart, registerables } from 'chart.js';
import type { Net } from '../../src/core/models/net.js';
import { list } from '../../src/core/models/index.js';
import { predictProbabilities } from '../../src/core/predict.js';
import type { ImageShape } from '../../src/core/data/dataset.js';
import { chooseBackend } from './backend.js';
import { getLang, type Lang, setLang, t } from './i18n.js';
import { loadSplit, trainInPage } from './train.js';

Chart.register(...registerables);

interface ModelInfo {
  model: string;
  classNames: string[];
  classNamesZh: string[];
  inputShape: ImageShape;
  testAccuracy: number | null;
}

interface Prediction {
  label: string;
  classIndex: number;
  probabilities: number[];
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

const state: {
  info?: ModelInfo;
  browserModel?: Net;
  browserModelName?: string;
  lastImage?: Blob;
  galleryOffset: number;
  galleryItems: { correct: boolean }[];
  stop: boolean;
  backend: string;
} = { galleryOffset: 0, galleryItems: [], stop: false, backend: '' };

/** The server's error message, or the HTTP status. */
async function errorText(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  return body.message ?? `HTTP ${res.status}`;
}

function className(i: number): string {
  const info = state.info!;
  return getLang() === 'zh' ? info.classNamesZh[i] : info.classNames[i];
}

// ---- charts ------------------------------------------------------------------------------

let probChart: Chart<'bar'>;
let lossChart: Chart<'line'>;
let accChart: Chart<'line'>;
let lastPrediction: Prediction | undefined;

function makeCharts(): void {
  const k = state.info!.classNames.length;
  probChart = new Chart($<HTMLCanvasElement>('prob-chart'), {
    type: 'bar',
    data: {
      labels: Array.from({ length: k }, (_, i) => className(i)),
      datasets: [{ data: new Array<number>(k).fill(0), backgroundColor: '#3b6fd8' }],
    },
    options: {
      indexAxis: 'y',
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { min: 0, max: 1 } },
      plugins: { legend: { display: false } },
    },
  });
  const line = (id: string, yMax?: number) =>
    new Chart($<HTMLCanvasElement>(id), {
      type: 'line',
      data: {
        datasets: [
          { label: '', data: [], borderColor: '#3b6fd8', pointRadius: 0, borderWidth: 2 },
          { label: '', data: [], borderColor: '#d8573b', pointRadius: 4, showLine: true, borderWidth: 2 },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        scales: {
          x: { type: 'linear', min: 0, title: { display: true, text: '' } },
          y: { min: 0, max: yMax },
        },
      },
    });
  lossChart = line('loss-chart');
  accChart = line('acc-chart', 1);
  relabelCharts();
}

function relabelCharts(): void {
  if (!probChart) return;
  probChart.data.labels = state.info!.classNames.map((_, i) => className(i));
  probChart.update();
  lossChart.data.datasets[0].label = t('probeLoss');
  lossChart.data.datasets[1].label = t('testLoss');
  accChart.data.datasets[0].label = t('probeAcc');
  accChart.data.datasets[1].label = t('testAcc');
  for (const c of [lossChart, accChart]) {
    (c.options.scales!.x as { title: { text: string } }).title.text = t('epochAxis');
    c.update();
  }
}

// ---- classification --------------------------------------------------------------------------

function useBrowserModel(): boolean {
  return (document.querySelector('input[name=source]:checked') as HTMLInputElement).value === 'browser';
}

/** Classifies an image with the chosen model; the server does the decoding either way. */
async function classifyBlob(blob: Blob): Promise<Prediction> {
  const headers = { 'content-type': blob.type || 'application/octet-stream' };
  if (useBrowserModel() && state.browserModel) {
    const res = await fetch('/api/prepare', { method: 'POST', body: blob, headers });
    if (!res.ok) throw new Error(await errorText(res));
    const prepared = (await res.json()) as { input: number[]; shape: ImageShape };
    const [p] = predictProbabilities(
      state.browserModel,
      Float32Array.from(prepared.input),
      1,
      prepared.shape,
    );
    const probabilities = Array.from(p);
    const classIndex = probabilities.indexOf(Math.max(...probabilities));
    return { label: state.info!.classNames[classIndex], classIndex, probabilities };
  }
  const res = await fetch(`/api/predict?topK=1`, { method: 'POST', body: blob, headers });
  if (!res.ok) throw new Error(await errorText(res));
  return (await res.json()) as Prediction;
}

function showPrediction(p: Prediction): void {
  lastPrediction = p;
  const label = $('result-label');
  label.textContent = className(p.classIndex);
  label.dataset.label = p.label;
  $('result-prob').textContent = `${(p.probabilities[p.classIndex] * 100).toFixed(1)}%`;
  $('result-source').textContent = useBrowserModel() && state.browserModel ? t('viaBrowser') : t('viaServer');
  $('result-error').textContent = '';
  probChart.data.datasets[0].data = p.probabilities;
  probChart.update();
}

async function classifyAndShow(blob: Blob, showPreview = true): Promise<void> {
  state.lastImage = blob;
  if (showPreview) {
    const img = $<HTMLImageElement>('preview');
    URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
  }
  try {
    showPrediction(await classifyBlob(blob));
  } catch (err) {
    $('result-error').textContent = (err as Error).message;
  }
}

function setUpUpload(): void {
  const input = $<HTMLInputElement>('file-input');
  input.addEventListener('change', () => {
    if (input.files?.[0]) void classifyAndShow(input.files[0]);
    input.value = '';
  });
  const zone = $('drop-zone');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer?.files[0];
    if (file) void classifyAndShow(file);
  });
}

/** Light strokes on black, as Fashion-MNIST's light objects on a dark background. */
function setUpDrawing(): void {
  const canvas = $<HTMLCanvasElement>('draw-canvas');
  const ctx = canvas.getContext('2d')!;
  const clear = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  let drawing = false;
  let inFlight = false;
  let dirty = false;
  // At most one request in flight; strokes made meanwhile are sent when it returns.
  const send = () => {
    if (inFlight) {
      dirty = true;
      return;
    }
    inFlight = true;
    dirty = false;
    canvas.toBlob((blob) => {
      if (!blob) {
        inFlight = false;
        return;
      }
      void classifyAndShow(blob).finally(() => {
        inFlight = false;
        if (dirty) send();
      });
    }, 'image/png');
  };
  const point = (e: PointerEvent) => {
    const r = canvas.getBoundingClientRect();
    return [
      ((e.clientX - r.left) * canvas.width) / r.width,
      ((e.clientY - r.top) * canvas.height) / r.height,
    ];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = point(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = point(e);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 22;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineTo(x, y);
    ctx.stroke();
    send();
  });
  const end = () => {
    if (drawing) send();
    drawing = false;
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  $('draw-clear').addEventListener('click', clear);
}

// ---- gallery -----------------------------------------------------------------------------------

async function loadGallery(): Promise<void> {
  const res = await fetch(`/api/gallery?offset=${state.galleryOffset}&count=24`);
  const grid = $('gallery');
  if (!res.ok) {
    $('gallery-summary').textContent = await errorText(res);
    return;
  }
  const body = (await res.json()) as {
    items: { index: number; image: string; label: string; predicted: string; correct: boolean }[];
  };
  const names = state.info!.classNames;
  for (const item of body.items) {
    const fig = document.createElement('figure');
    fig.className = item.correct ? 'right' : 'wrong';
    fig.dataset.index = String(item.index);
    fig.dataset.label = item.label;
    const img = document.createElement('img');
    img.src = item.image;
    img.alt = item.label;
    fig.title = item.label;
    const cap = document.createElement('figcaption');
    const predicted = names.indexOf(item.predicted);
    cap.dataset.classIndex = String(predicted);
    cap.textContent = className(predicted);
    fig.append(img, cap);
    fig.addEventListener('click', async () => {
      const blob = await (await fetch(item.image)).blob();
      document.getElementById('classify')!.scrollIntoView({ behavior: 'smooth' });
      await classifyAndShow(blob);
    });
    grid.append(fig);
    state.galleryItems.push(item);
  }
  state.galleryOffset += body.items.length;
  updateGallerySummary();
}

function updateGallerySummary(): void {
  const n = state.galleryItems.length;
  const correct = state.galleryItems.filter((i) => i.correct).length;
  $('gallery-summary').textContent = t('gallerySummary', { n, correct });
  for (const cap of document.querySelectorAll<HTMLElement>('#gallery figcaption')) {
    cap.textContent = className(Number(cap.dataset.classIndex));
  }
}

// ---- training ------------------------------------------------------------------------------------

const WANTED_MODELS = ['softmax', 'mlp', 'cnn'];

/** Fills the model list; called again when the language changes. */
function fillModelPicker(): void {
  const select = $<HTMLSelectElement>('train-model');
  const chosen = select.value || 'softmax';
  const registered = new Map(list().map((e) => [e.name, e]));
  // The three families the page offers, plus whatever else this build registers.
  const names = [...new Set([...WANTED_MODELS, ...registered.keys()])];
  select.replaceChildren(
    ...names.map((name) => {
      const opt = document.createElement('option');
      opt.value = name;
      opt.disabled = !registered.has(name);
      opt.textContent = registered.has(name) ? name : `${name} (${t('notInBuild')})`;
      opt.title = registered.get(name)?.description ?? '';
      return opt;
    }),
  );
  select.value = registered.has(chosen) ? chosen : 'softmax';
}

function setUpModelPicker(): void {
  fillModelPicker();
  const select = $<HTMLSelectElement>('train-model');
  select.addEventListener('change', () => {
    const entry = list().find((e) => e.name === select.value);
    if (!entry) return;
    // Long schedules are for the CLI; the page starts short and the user can raise it.
    $<HTMLInputElement>('train-epochs').value = String(Math.min(entry.defaults.epochs, 5));
    $<HTMLInputElement>('train-lr').value = String(entry.defaults.lr);
    $<HTMLInputElement>('train-batch').value = String(entry.defaults.batchSize ?? 256);
  });
}

async function startTraining(): Promise<void> {
  const info = state.info!;
  const num = (id: string) => Number($<HTMLInputElement>(id).value);
  const model = $<HTMLSelectElement>('train-model').value;
  const epochs = Math.max(1, Math.round(num('train-epochs')));
  const lr = num('train-lr');
  const batchSize = Math.max(1, Math.round(num('train-batch')));
  const status = $('train-status');
  const start = $<HTMLButtonElement>('train-start');
  const stop = $<HTMLButtonElement>('train-stop');
  start.disabled = true;
  stop.disabled = false;
  state.stop = false;
  $('train-test-acc').textContent = '–';
  delete $('train-test-acc').dataset.value;
  for (const c of [lossChart, accChart]) {
    for (const d of c.data.datasets) d.data = [];
    c.update();
  }
  try {
    const meta = (await (await fetch('/api/data')).json()) as {
      train: number;
      test: number;
      message?: string;
    };
    if (meta.message) throw new Error(meta.message);
    const n = Math.min(Math.max(100, Math.round(num('train-limit'))), meta.train);
    status.textContent = t('loadingData', { n, t: meta.test });
    const k = info.classNames.length;
    const [train, test] = await Promise.all([loadSplit('train', n, k), loadSplit('test', meta.test, k)]);
    const begin = performance.now();
    const { model: trained, history } = await trainInPage({
      model,
      epochs,
      lr,
      batchSize,
      seed: 0,
      shape: info.inputShape,
      numClasses: k,
      train,
      test,
      probeEvery: 10,
      shouldStop: () => state.stop,
      onProgress: (epoch, done, total) => {
        status.textContent = t('training', { epoch, epochs, done, total });
      },
      onProbe: (x, loss, accuracy) => {
        lossChart.data.datasets[0].data.push({ x, y: loss });
        accChart.data.datasets[0].data.push({ x, y: accuracy });
        lossChart.update();
        accChart.update();
      },
      onEpoch: (m) => {
        lossChart.data.datasets[1].data.push({ x: m.epoch, y: m.test_loss });
        accChart.data.datasets[1].data.push({ x: m.epoch, y: m.test_accuracy });
        lossChart.update();
        accChart.update();
        const acc = $('train-test-acc');
        acc.textContent = m.test_accuracy.toFixed(4);
        acc.dataset.value = String(m.test_accuracy);
      },
    });
    const seconds = ((performance.now() - begin) / 1000).toFixed(1);
    state.browserModel?.dispose();
    state.browserModel = trained;
    state.browserModelName = model;
    const radio = $<HTMLInputElement>('source-browser');
    radio.disabled = false;
    radio.checked = true;
    status.textContent = state.stop
      ? t('stopped', { epochs: history.length })
      : t('finished', { epochs: history.length, seconds, backend: state.backend });
    status.dataset.state = 'done';
    if (state.lastImage) await classifyAndShow(state.lastImage, false);
  } catch (err) {
    status.textContent = t('failed', { message: (err as Error).message });
    status.dataset.state = 'failed';
  } finally {
    start.disabled = false;
    stop.disabled = true;
  }
}

// ---- start -----------------------------------------------------------------------------------------

async function init(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const lang = (params.get('lang') ?? localStorage.getItem('imgclf-lang') ?? 'en') as Lang;
  setLang(lang === 'zh' ? 'zh' : 'en');
  const toggle = $('lang-toggle');
  const labelToggle = () => (toggle.textContent = getLang() === 'zh' ? 'English' : '中文');
  labelToggle();
  toggle.addEventListener('click', () => {
    setLang(getLang() === 'zh' ? 'en' : 'zh');
    localStorage.setItem('imgclf-lang', getLang());
    labelToggle();
    relabelCharts();
    updateGallerySummary();
    if (lastPrediction) showPrediction(lastPrediction);
    fillModelPicker();
  });

  const res = await fetch('/api/model');
  if (!res.ok) {
    $('result-error').textContent = await errorText(res);
    return;
  }
  state.info = (await res.json()) as ModelInfo;
  const acc = state.info.testAccuracy;
  $('server-model').textContent = `${state.info.model}${acc !== null ? ` · test acc ${acc.toFixed(3)}` : ''}`;
  makeCharts();
  setUpUpload();
  setUpDrawing();
  setUpModelPicker();
  $('train-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void startTraining();
  });
  $('train-stop').addEventListener('click', () => (state.stop = true));
  $('gallery-more').addEventListener('click', () => void loadGallery());
  document.querySelectorAll('input[name=source]').forEach((r) =>
    r.addEventListener('change', () => {
      if (state.lastImage) void classifyAndShow(state.lastImage, false);
    }),
  );
  state.backend = await chooseBackend(params.get('backend'));
  $('backend').textContent = state.backend;
  document.body.dataset.backend = state.backend;
  await loadGallery();
  document.body.dataset.ready = 'true';
}

void init();
