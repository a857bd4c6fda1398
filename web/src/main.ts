/**
 * The imgclf page: classify (upload, drop, draw), browse the gallery, train in the browser.
 * Each section lives in its own module; this one wires them together in order.
 */
import { startBackend } from './backend.js';
import { setUpClassify } from './classify.js';
import { setUpGallery } from './gallery.js';
import { setUpLang } from './lang.js';
import { loadModelInfo } from './model-info.js';
import { setUpTrainPanel } from './train-panel.js';

async function init(): Promise<void> {
  const params = new URLSearchParams(location.search);
  setUpLang(params);
  const info = await loadModelInfo();
  if (!info) return;
  const classifier = setUpClassify(info);
  let backend = '';
  setUpTrainPanel({ info, classifier, backend: () => backend });
  const gallery = setUpGallery(info, classifier);
  backend = await startBackend(params.get('backend'));
  await gallery.loadMore();
  document.body.dataset.ready = 'true';
}

void init();
