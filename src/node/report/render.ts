/**
 * Chart rendering in Node: a Vega-Lite spec is compiled to Vega, rendered to an SVG string by
 * Vega's own headless view, and rasterized to PNG by sharp (librsvg, with fonts found through
 * fontconfig). resvg was tried first for its explicit font files, but it rereads a font file
 * for every text element: with the 20 MB Noto CJK collection one confusion matrix took 3 to 7 s
 * against well under a second here.
 */
import { existsSync } from 'node:fs';
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/**
 * Font stack written into every chart and page. Noto Sans CJK (Debian's fonts-noto-cjk) comes
 * first: it has Latin and Chinese glyphs, so both languages look the same.
 */
export const FONT_FAMILY = "'Noto Sans CJK SC', 'Noto Sans', 'DejaVu Sans', sans-serif";

/** Where distributions put Noto Sans CJK (Debian/Ubuntu, Arch, Fedora) and macOS its CJK font. */
const CJK_FONTS = [
  '/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc',
  '/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc',
  '/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc',
  '/System/Library/Fonts/PingFang.ttc',
];

/** Whether a CJK font is installed, i.e. whether Chinese labels can render. */
export function hasCjkFont(): boolean {
  return CJK_FONTS.some((f) => existsSync(f));
}

/** Rasterizes an SVG string on white; `scale` 2 gives crisp pictures on high-density screens. */
export async function svgToPng(svg: string, scale = 1): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 72 * scale })
    .flatten({ background: '#ffffff' })
    .png()
    .toBuffer();
}

/**
 * Text width as Noto Sans draws it, in pixels. Vega's headless fallback guesses 0.8 em for every
 * character, which overestimates Latin text and underestimates CJK (1 em wide), so legends
 * and axis labels were placed badly; this is what vl-convert does too (its own measure).
 */
export function textWidth(text: string, fontSize: number): number {
  let em = 0;
  for (const ch of text) {
    if (
      /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/.test(ch)
    )
      em += 1;
    else if (ch === ' ') em += 0.23;
    else if (/[il.,:;'|!]/.test(ch)) em += 0.26;
    else if (/[A-Z]/.test(ch)) em += 0.66;
    else if (/[mwMW]/.test(ch)) em += 0.85;
    else em += 0.56;
  }
  return em * fontSize;
}

interface TextItem {
  text?: unknown;
  fontSize?: number;
}

(
  vega as unknown as { textMetrics: { width: (item: TextItem, text?: unknown) => number } }
).textMetrics.width = (item, text) => {
  const t = text ?? item.text;
  const s = Array.isArray(t)
    ? t.map(String).reduce((a, b) => (a.length > b.length ? a : b), '')
    : String(t ?? '');
  return textWidth(s.trim(), item.fontSize ?? 11);
};

export interface Chart {
  svg: string;
  /** CSS pixels, as declared by the SVG. */
  width: number;
  height: number;
}

/** Compiles and renders a Vega-Lite spec to SVG without a browser. */
export async function renderVegaLite(spec: TopLevelSpec): Promise<Chart> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
    if (!m) throw new Error('vega produced an SVG without a size');
    return { svg, width: Number(m[1]), height: Number(m[2]) };
  } finally {
    view.finalize();
  }
}
