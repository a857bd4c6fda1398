/**
 * The imgclf page: classify (upload, drop, draw), browse the gallery, train in the browser, and
 * train on your own classes (camera, files), try and keep that model. Each section lives in its
 * own module; this one wires them together in order.
 */
import { startBackend } from './backend.js';
import { setUpCamera } from './camera.js';
import { setUpClassify } from './classify.js';
import { type Gallery, setUpGallery } from './gallery.js';
import { setUpLang } from './lang.js';
import { loadModelInfo } from './model-info.js';
import { setUpOwnClasses } from './own-classes.js';
import { setUpOwnKeep } from './own-keep.js';
import { setUpOwnTry } from './own-try.js';
import { setUpTrainPanel } from './train-panel.js';

async function init(): Promise<void> {
  const params = new URLSearchParams(location.search);
  setUpLang(params);
  let backend = '';
  // Your own classes need no server model: they are set up whatever /api/model answers.
  const camera = setUpCamera();
  setUpOwnClasses({ camera, backend: () => backend });
  setUpOwnTry(camera);
  const keep = setUpOwnKeep();
  const info = await loadModelInfo();
  let gallery: Gallery | undefined;
  if (info) {
    const classifier = setUpClassify(info);
    setUpTrainPanel({ info, classifier, backend: () => backend });
    gallery = setUpGallery(info, classifier);
  }
  backend = await startBackend(params.get('backend'));
  // Models saved in this browser are offered as soon as the page opens.
  await keep.refresh();
  if (!gallery) return;
  await gallery.loadMore();
  document.body.dataset.ready = 'true';
}

void init();
