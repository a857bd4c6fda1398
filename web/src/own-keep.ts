/**
 * Keeping the page's own model: save it in this browser (IndexedDB, kept.ts) and find it there
 * after a reload, download it as a run directory in a zip (run-files.ts) for `imgclf evaluate`,
 * `predict` and `serve --run DIR`, and open a run directory (its files, or such a zip) to
 * classify with it here.
 */
import type { Net } from 'imgclf/core';
import { type BackboneRecord, loadRecordedBackbone, type PageBackbone } from './backbone.js';
import { $, acceptFiles } from './dom.js';
import { getLang, show } from './i18n.js';
import { onLangChange } from './lang.js';
import { forgetKept, keepRun, type KeptRun, listKept, loadKeptArtifacts } from './kept.js';
import { chosenBackbone, onOwnModel, type OwnModel, ownModel, setOwnModel } from './own-model.js';
import type { PageRunMetadata } from './own-train.js';
import { encodePng } from './pixels.js';
import {
  canHash,
  netOf,
  readRunFiles,
  type RunFiles,
  runFiles,
  runFolderName,
  unzipRun,
  zipRun,
} from './run-files.js';

export interface Keep {
  /** Lists the models kept in this browser (the page offers them on load). */
  refresh(): Promise<void>;
}

/** Offers `bytes` as a file download. */
function download(bytes: Uint8Array, name: string, type: string): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

const accuracy = (a: number | undefined) => (a === undefined ? '–' : a.toFixed(3));

/**
 * The head and, for a run trained on a backbone, the backbone it records: the one chosen under
 * Backbone when it is that one, else fetched from its URL and checked against its SHA-256
 * (backbone.ts `loadRecordedBackbone`).
 */
async function withBackbone(
  metadata: PageRunMetadata,
  net: Net,
  status: HTMLElement,
): Promise<{ net: Net; backbone?: PageBackbone }> {
  if (!metadata.backbone) return { net };
  const record = metadata.backbone as BackboneRecord;
  show(status, 'loadingBackbone', { source: record.source });
  try {
    return { net, backbone: await loadRecordedBackbone(record, chosenBackbone()) };
  } catch (err) {
    net.dispose();
    throw err;
  }
}

export function setUpOwnKeep(): Keep {
  const status = $('own-keep-status');
  const savedList = $<HTMLUListElement>('own-saved');
  const nameInput = $<HTMLInputElement>('own-save-name');
  let kept: KeptRun[] = [];

  function enable(model: OwnModel | undefined): void {
    $<HTMLButtonElement>('own-save').disabled = !model;
    $<HTMLButtonElement>('own-download').disabled = !model;
    if (model && model.origin !== 'kept') nameInput.value = model.name;
  }

  function renderKept(): void {
    const title = $('own-saved-title');
    show(title, kept.length ? 'savedModels' : 'savedNone');
    savedList.replaceChildren(
      ...kept.map((k) => {
        const li = document.createElement('li');
        li.dataset.key = k.key;
        li.dataset.name = k.name;
        const text = document.createElement('span');
        show(text, 'savedItem', {
          name: k.name,
          classes: k.metadata.classNames.join(', '),
          model: k.metadata.model,
          shape: k.metadata.inputShape.join('x'),
          acc: accuracy(k.metadata.testAccuracy),
          date: new Date(k.saved).toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en'),
        });
        const load = document.createElement('button');
        load.type = 'button';
        load.className = 'own-saved-load';
        show(load, 'loadSaved');
        load.addEventListener('click', () => void loadKept(k));
        const forget = document.createElement('button');
        forget.type = 'button';
        forget.className = 'own-saved-delete';
        show(forget, 'deleteSaved');
        forget.addEventListener('click', async () => {
          await forgetKept(k.key).catch((err: Error) => show(status, 'keepFailed', { message: err.message }));
          await refresh();
        });
        li.append(text, load, forget);
        return li;
      }),
    );
  }

  async function refresh(): Promise<void> {
    try {
      kept = await listKept();
    } catch (err) {
      kept = [];
      show(status, 'keepFailed', { message: (err as Error).message });
    }
    renderKept();
  }

  async function loadKept(k: KeptRun): Promise<void> {
    try {
      const { net, backbone } = await withBackbone(
        k.metadata,
        await netOf(k.metadata, await loadKeptArtifacts(k.key)),
        status,
      );
      setOwnModel({
        net,
        ...(backbone ? { backbone } : {}),
        metadata: k.metadata,
        metrics: k.metrics,
        data: k.data,
        name: k.name,
        origin: 'kept',
      });
      nameInput.value = k.name;
      show(status, 'loadedKept', { name: k.name, classes: k.metadata.classNames.join(', ') });
      status.dataset.state = 'loaded';
    } catch (err) {
      show(status, 'keepFailed', { message: (err as Error).message });
    }
  }

  async function save(): Promise<void> {
    const model = ownModel();
    if (!model) return;
    const name = nameInput.value.trim() || model.name;
    try {
      const artifacts = await model.net.artifacts();
      await keepRun(name, artifacts, { metadata: model.metadata, metrics: model.metrics, data: model.data });
      show(status, 'savedAs', { name });
      status.dataset.state = 'saved';
      await refresh();
    } catch (err) {
      show(status, 'keepFailed', { message: (err as Error).message });
    }
  }

  async function downloadRun(): Promise<void> {
    const model = ownModel();
    if (!model) return;
    try {
      const files = await runFiles(model.net, model, { encodePng });
      const folder = runFolderName(nameInput.value || model.name);
      const zip = zipRun(files, folder);
      download(zip, `${folder}.zip`, 'application/zip');
      show(status, canHash() ? 'downloaded' : 'downloadedNoManifest', {
        file: `${folder}.zip`,
        kb: Math.ceil(zip.length / 1024),
        n: files.size,
      });
      status.dataset.state = 'downloaded';
    } catch (err) {
      show(status, 'keepFailed', { message: (err as Error).message });
    }
  }

  /** Reads the files picked (a run directory's files, or one zip of it). */
  async function open(picked: File[]): Promise<void> {
    try {
      let files: RunFiles;
      const zip = picked.find((f) => /\.zip$/i.test(f.name) || f.type === 'application/zip');
      if (zip) files = unzipRun(new Uint8Array(await zip.arrayBuffer()));
      else {
        files = new Map();
        // Picked one by one (or from a folder): the names are what a run directory holds.
        for (const f of picked) files.set(f.name, new Uint8Array(await f.arrayBuffer()));
      }
      const read = await readRunFiles(files);
      const { net, backbone } = await withBackbone(
        read.metadata,
        await netOf(read.metadata, read.artifacts),
        status,
      );
      const name = zip ? zip.name.replace(/\.zip$/i, '') : read.metadata.classNames.join(' · ');
      setOwnModel({
        net,
        ...(backbone ? { backbone } : {}),
        metadata: read.metadata,
        metrics: read.metrics,
        name,
        origin: 'uploaded',
      });
      show(status, read.manifest === 'checked' ? 'openedChecked' : 'opened', {
        name,
        classes: read.metadata.classNames.join(', '),
      });
      status.dataset.state = 'opened';
    } catch (err) {
      show(status, 'keepFailed', { message: (err as Error).message });
      status.dataset.state = 'failed';
    }
  }

  $('own-save').addEventListener('click', () => void save());
  $('own-download').addEventListener('click', () => void downloadRun());
  acceptFiles($<HTMLInputElement>('own-upload'), $('own-upload-zone'), open);
  onOwnModel(enable);
  onLangChange(renderKept);
  enable(undefined);
  return { refresh };
}
