/**
 * The training section: pick a model, see (and change) its epochs, learning rate and batch
 * size, which start as the model's own defaults from the plan (core/plan.ts), train in the
 * page with live curves, then classify with the result.
 */
import { apiFetch } from './api.js';
import { listModels as list, modelDefaults, SETTING_DECLS, settingHelp } from 'imgclf/core';
import { Chart } from './charts.js';
import type { Classifier } from './classify.js';
import { $ } from './dom.js';
import { t } from './i18n.js';
import { onLangChange } from './lang.js';
import type { ModelInfo } from './model-info.js';
import { loadSplit, pagePlan, trainInPage } from './train.js';

/** The three families the page offers, plus whatever else this build registers. */
const WANTED_MODELS = ['softmax', 'mlp', 'cnn'];
/** The model selected when the page opens. */
const FIRST_MODEL = 'softmax';
/** Batches between two points of the live training curves. */
const PROBE_EVERY = 10;

/** Fills the model list; called again when the language changes. */
function fillModelPicker(): void {
  const select = $<HTMLSelectElement>('train-model');
  const chosen = select.value || FIRST_MODEL;
  // Models that learn by memorizing (knn) have nothing for the training loop to fit.
  const registered = new Map(
    list()
      .filter((e) => !e.memorizes)
      .map((e) => [e.name, e]),
  );
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
  select.value = registered.has(chosen) ? chosen : FIRST_MODEL;
}

/** The form's number fields and the settings (core/settings.ts) they set. */
const FIELDS = [
  ['train-epochs', 'epochs'],
  ['train-lr', 'lr'],
  ['train-batch', 'batchSize'],
] as const;

/**
 * Gives each number field its setting's help as a tooltip, and its declared lower bound and
 * step (whole numbers step by 1), so the browser flags what the plan would reject. The upper
 * bounds in index.html are the page's own: a browser tab trains at most that much.
 */
function describeFields(): void {
  for (const [id, name] of FIELDS) {
    const input = $<HTMLInputElement>(id);
    const decl = SETTING_DECLS[name];
    input.title = settingHelp(name);
    input.step = decl.type === 'int' ? '1' : 'any';
    if (decl.min !== undefined && !decl.minExclusive) input.min = String(decl.min);
  }
}

/** Shows `model`'s own training defaults in the form, as `imgclf train` would use them. */
function showDefaults(model: string): void {
  const d = modelDefaults(model);
  for (const [id, name] of FIELDS) $<HTMLInputElement>(id).value = String(d[name]);
}

/** A number field's value; empty means "not chosen" (the model's default). */
function field(id: string): number | undefined {
  const v = $<HTMLInputElement>(id).value.trim();
  return v === '' ? undefined : Number(v);
}

/** A line chart of a live curve (blue, per probe) and per-epoch points (red). */
export function lineChart(id: string, yMax?: number): Chart<'line'> {
  return new Chart($<HTMLCanvasElement>(id), {
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
}

export interface TrainPanelDeps {
  info: ModelInfo;
  /** Takes the trained model and classifies with it. */
  classifier: Classifier;
  /** The TensorFlow.js backend in use, for the status line. */
  backend: () => string;
}

export function setUpTrainPanel({ info, classifier, backend }: TrainPanelDeps): void {
  const lossChart = lineChart('loss-chart');
  const accChart = lineChart('acc-chart', 1);
  let stop = false;

  function relabelCharts(): void {
    lossChart.data.datasets[0].label = t('probeLoss');
    lossChart.data.datasets[1].label = t('testLoss');
    accChart.data.datasets[0].label = t('probeAcc');
    accChart.data.datasets[1].label = t('testAcc');
    for (const c of [lossChart, accChart]) {
      (c.options.scales!.x as { title: { text: string } }).title.text = t('epochAxis');
      c.update();
    }
  }

  async function startTraining(): Promise<void> {
    const status = $('train-status');
    const start = $<HTMLButtonElement>('train-start');
    const stopButton = $<HTMLButtonElement>('train-stop');
    start.disabled = true;
    stopButton.disabled = false;
    stop = false;
    $('train-test-acc').textContent = '–';
    delete $('train-test-acc').dataset.value;
    for (const c of [lossChart, accChart]) {
      for (const d of c.data.datasets) d.data = [];
      c.update();
    }
    try {
      const plan = pagePlan({
        model: $<HTMLSelectElement>('train-model').value,
        epochs: field('train-epochs'),
        lr: field('train-lr'),
        batchSize: field('train-batch'),
      });
      const meta = (await (await apiFetch('/api/data')).json()) as {
        train: number;
        test: number;
        message?: string;
      };
      if (meta.message) throw new Error(meta.message);
      const n = Math.min(
        Math.max(100, Math.round(Number($<HTMLInputElement>('train-limit').value))),
        meta.train,
      );
      status.textContent = t('loadingData', { n, t: meta.test });
      const k = info.classNames.length;
      const [train, test] = await Promise.all([loadSplit('train', n, k), loadSplit('test', meta.test, k)]);
      const begin = performance.now();
      const { model: trained, history } = await trainInPage({
        plan,
        shape: info.inputShape,
        numClasses: k,
        train,
        test,
        probeEvery: PROBE_EVERY,
        shouldStop: () => stop,
        onProgress: (epoch, done, total) => {
          status.textContent = t('training', { epoch, epochs: plan.epochs, done, total });
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
      classifier.adopt(trained);
      status.textContent = stop
        ? t('stopped', { epochs: history.length })
        : t('finished', { epochs: history.length, seconds, backend: backend() });
      status.dataset.state = 'done';
      await classifier.reclassify();
    } catch (err) {
      status.textContent = t('failed', { message: (err as Error).message });
      status.dataset.state = 'failed';
    } finally {
      start.disabled = false;
      stopButton.disabled = true;
    }
  }

  fillModelPicker();
  describeFields();
  const select = $<HTMLSelectElement>('train-model');
  showDefaults(select.value);
  select.addEventListener('change', () => showDefaults(select.value));
  $('train-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void startTraining();
  });
  $('train-stop').addEventListener('click', () => (stop = true));
  relabelCharts();
  onLangChange(() => {
    relabelCharts();
    fillModelPicker();
  });
}
