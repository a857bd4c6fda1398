/**
 * Classifying: upload or drop an image, or draw one; the prediction and its probability bars
 * are shown, by the server model or, once the page has trained one, by the page's model.
 */
import { apiFetch } from './api.js';
import { type ImageShape, type Net, predictProbabilities } from 'imgclf/core';
import { Chart } from './charts.js';
import { $, acceptFiles, errorText } from './dom.js';
import { t } from './i18n.js';
import { onLangChange } from './lang.js';
import { className, type ModelInfo } from './model-info.js';
import { attachDrawing } from './draw.js';

interface Prediction {
  label: string;
  classIndex: number;
  probabilities: number[];
}

export interface Classifier {
  /** Classifies `blob` and shows the result (and the image, unless showPreview is false). */
  classifyAndShow(blob: Blob, showPreview?: boolean): Promise<void>;
  /** Makes `net` the page's model (replacing the previous one) and selects it for classifying. */
  adopt(net: Net): void;
  /** Classifies the last image again, with the model now selected. */
  reclassify(): Promise<void>;
}

export function setUpClassify(info: ModelInfo): Classifier {
  let browserModel: Net | undefined;
  let lastImage: Blob | undefined;
  let lastPrediction: Prediction | undefined;

  const k = info.classNames.length;
  const probChart = new Chart($<HTMLCanvasElement>('prob-chart'), {
    type: 'bar',
    data: {
      labels: Array.from({ length: k }, (_, i) => className(info, i)),
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

  const useBrowserModel = (): boolean =>
    (document.querySelector('input[name=source]:checked') as HTMLInputElement).value === 'browser';

  /** Classifies an image with the chosen model; the server does the decoding either way. */
  async function classifyBlob(blob: Blob): Promise<Prediction> {
    const headers = { 'content-type': blob.type || 'application/octet-stream' };
    if (useBrowserModel() && browserModel) {
      const res = await apiFetch('/api/prepare', { method: 'POST', body: blob, headers });
      if (!res.ok) throw new Error(await errorText(res));
      const prepared = (await res.json()) as { input: number[]; shape: ImageShape };
      const [p] = predictProbabilities(browserModel, Float32Array.from(prepared.input), 1, prepared.shape);
      const probabilities = Array.from(p);
      const classIndex = probabilities.indexOf(Math.max(...probabilities));
      return { label: info.classNames[classIndex], classIndex, probabilities };
    }
    const res = await apiFetch(`/api/predict?topK=1`, { method: 'POST', body: blob, headers });
    if (!res.ok) throw new Error(await errorText(res));
    return (await res.json()) as Prediction;
  }

  function showPrediction(p: Prediction): void {
    lastPrediction = p;
    const label = $('result-label');
    label.textContent = className(info, p.classIndex);
    label.dataset.label = p.label;
    $('result-prob').textContent = `${(p.probabilities[p.classIndex] * 100).toFixed(1)}%`;
    $('result-source').textContent = useBrowserModel() && browserModel ? t('viaBrowser') : t('viaServer');
    $('result-error').textContent = '';
    probChart.data.datasets[0].data = p.probabilities;
    probChart.update();
  }

  async function classifyAndShow(blob: Blob, showPreview = true): Promise<void> {
    lastImage = blob;
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

  async function reclassify(): Promise<void> {
    if (lastImage) await classifyAndShow(lastImage, false);
  }

  setUpUpload(classifyAndShow);
  setUpDrawing(classifyAndShow);
  document
    .querySelectorAll('input[name=source]')
    .forEach((r) => r.addEventListener('change', () => void reclassify()));
  onLangChange(() => {
    probChart.data.labels = info.classNames.map((_, i) => className(info, i));
    probChart.update();
    if (lastPrediction) showPrediction(lastPrediction);
  });

  return {
    classifyAndShow,
    reclassify,
    adopt(net) {
      browserModel?.dispose();
      browserModel = net;
      const radio = $<HTMLInputElement>('source-browser');
      radio.disabled = false;
      radio.checked = true;
    },
  };
}

type Classify = (blob: Blob) => Promise<void>;

function setUpUpload(classify: Classify): void {
  acceptFiles($<HTMLInputElement>('file-input'), $('drop-zone'), (files) => classify(files[0]));
}

/** Light strokes on black, as Fashion-MNIST's light objects on a dark background. */
function setUpDrawing(classify: Classify): void {
  const canvas = $<HTMLCanvasElement>('draw-canvas');
  const ctx = canvas.getContext('2d')!;
  const clear = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
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
      void classify(blob).finally(() => {
        inFlight = false;
        if (dirty) send();
      });
    }, 'image/png');
  };
  attachDrawing(canvas, { colour: () => '#fff', width: 22, onStroke: send, onEnd: send });
  $('draw-clear').addEventListener('click', clear);
}
