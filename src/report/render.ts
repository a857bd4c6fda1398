/**
 * Chart rendering in Node: a Vega-Lite spec is compiled to Vega, rendered to an SVG string by
 * Vega's own headless view, and rasterized to PNG by resvg. resvg is given font files
 * explicitly (Noto Sans CJK when installed), so Chinese labels render the same everywhere
 * instead of depending on whatever fontconfig happens to pick.
 */
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';
import { existsSync } from 'node:fs';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Font stack written into every chart and page; the first family is the one we ship files for. */
export const FONT_FAMILY = "'Noto Sans CJK SC', 'Noto Sans', 'DejaVu Sans', sans-serif";

/** Where distributions put Noto Sans CJK (Debian/Ubuntu, Arch, Fedora) and a Latin fallback. */
const FONT_CANDIDATES = [
  '/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc',
  '/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc',
  '/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc',
  '/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc',
  '/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc',
  '/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc',
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf',
];

export interface FontSetup {
  files: string[];
  /** Whether a CJK font was found, i.e. whether Chinese labels can render. */
  cjk: boolean;
}

let fonts: FontSetup | undefined;

/** The font files resvg loads. IMGCLF_FONT (a path) is tried first. */
export function fontSetup(): FontSetup {
  if (!fonts) {
    const extra = process.env.IMGCLF_FONT ? [process.env.IMGCLF_FONT] : [];
    const files = [...extra, ...FONT_CANDIDATES].filter((f) => existsSync(f));
    fonts = { files, cjk: files.some((f) => /CJK|IMGCLF/i.test(f)) || extra.length > 0 };
  }
  return fonts;
}

function resvgOptions(scale: number): ResvgRenderOptions {
  const { files } = fontSetup();
  return {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: {
      fontFiles: files,
      // Without any known file, fall back to scanning the system's font folders.
      loadSystemFonts: files.length === 0,
      defaultFontFamily: 'Noto Sans CJK SC',
      sansSerifFamily: 'Noto Sans CJK SC',
    },
  };
}

/** Rasterizes an SVG string; `scale` 2 gives crisp pictures on high-density screens. */
export function svgToPng(svg: string, scale = 1): Buffer {
  return new Resvg(svg, resvgOptions(scale)).render().asPng();
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
