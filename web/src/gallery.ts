/** The gallery: test images with the server model's predictions; clicking one classifies it. */
import { apiFetch } from './api.js';
import type { Classifier } from './classify.js';
import { $, errorText } from './dom.js';
import { t } from './i18n.js';
import { onLangChange } from './lang.js';
import { className, type ModelInfo } from './model-info.js';

/** Images fetched per page of the gallery. */
const PAGE = 24;

export interface Gallery {
  /** Fetches and shows the next page of test images. */
  loadMore(): Promise<void>;
}

export function setUpGallery(info: ModelInfo, classifier: Classifier): Gallery {
  let offset = 0;
  const items: { correct: boolean }[] = [];

  function updateSummary(): void {
    const n = items.length;
    const correct = items.filter((i) => i.correct).length;
    $('gallery-summary').textContent = t('gallerySummary', { n, correct });
    for (const cap of document.querySelectorAll<HTMLElement>('#gallery figcaption')) {
      cap.textContent = className(info, Number(cap.dataset.classIndex));
    }
  }

  async function loadMore(): Promise<void> {
    const res = await apiFetch(`/api/gallery?offset=${offset}&count=${PAGE}`);
    const grid = $('gallery');
    if (!res.ok) {
      $('gallery-summary').textContent = await errorText(res);
      return;
    }
    const body = (await res.json()) as {
      items: { index: number; image: string; label: string; predicted: string; correct: boolean }[];
    };
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
      const predicted = info.classNames.indexOf(item.predicted);
      cap.dataset.classIndex = String(predicted);
      cap.textContent = className(info, predicted);
      fig.append(img, cap);
      fig.addEventListener('click', async () => {
        const blob = await (await apiFetch(item.image)).blob();
        $('classify').scrollIntoView({ behavior: 'smooth' });
        await classifier.classifyAndShow(blob);
      });
      grid.append(fig);
      items.push(item);
    }
    offset += body.items.length;
    updateSummary();
  }

  $('gallery-more').addEventListener('click', () => void loadMore());
  onLangChange(updateSummary);
  return { loadMore };
}
