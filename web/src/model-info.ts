/** The header: which model the server classifies with, and its class names in both languages. */
import { apiFetch } from './api.js';
import type { ImageShape } from 'imgclf/core';
import { $, errorText } from './dom.js';
import { getLang } from './i18n.js';

export interface ModelInfo {
  model: string;
  classNames: string[];
  classNamesZh: string[];
  inputShape: ImageShape;
  testAccuracy: number | null;
}

/** Fetches the server model's description and shows it in the header; errors appear in the result area. */
export async function loadModelInfo(): Promise<ModelInfo | undefined> {
  const res = await apiFetch('/api/model');
  if (!res.ok) {
    $('result-error').textContent = await errorText(res);
    return undefined;
  }
  const info = (await res.json()) as ModelInfo;
  const acc = info.testAccuracy;
  $('server-model').textContent = `${info.model}${acc !== null ? ` · test acc ${acc.toFixed(3)}` : ''}`;
  return info;
}

/** Class `i`'s name in the page's current language. */
export function className(info: ModelInfo, i: number): string {
  return getLang() === 'zh' ? info.classNamesZh[i] : info.classNames[i];
}
