/**
 * Language switching: the first language comes from `?lang=` or the last choice (localStorage),
 * the header button toggles English / 中文, and each section relabels itself through `onLangChange`.
 */
import { $ } from './dom.js';
import { getLang, type Lang, setLang } from './i18n.js';

const STORAGE_KEY = 'imgclf-lang';
const listeners: (() => void)[] = [];

/** Runs `relabel` after every switch of language. */
export function onLangChange(relabel: () => void): void {
  listeners.push(relabel);
}

/** Sets the first language and wires the toggle button. */
export function setUpLang(params: URLSearchParams): void {
  const lang = (params.get('lang') ?? localStorage.getItem(STORAGE_KEY) ?? 'en') as Lang;
  setLang(lang === 'zh' ? 'zh' : 'en');
  const toggle = $('lang-toggle');
  const labelToggle = () => (toggle.textContent = getLang() === 'zh' ? 'English' : '中文');
  labelToggle();
  toggle.addEventListener('click', () => {
    setLang(getLang() === 'zh' ? 'en' : 'zh');
    localStorage.setItem(STORAGE_KEY, getLang());
    labelToggle();
    for (const relabel of listeners) relabel();
  });
}
