/** Headless Debian Chromium through playwright-core (never downloads a browser), and in-page probes. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Browser, type BrowserContext, type ElementHandle, type Frame, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, inject } from 'vitest';

export const XSS_RUN = '<img src=x onerror=alert(1)>';
export const TAB = 'matmul_explainer';

/** Where screenshots and figures go: e2e/out/ (git-ignored) unless UPDATE_DOCS=1 asks to refresh docs/. */
export const updateDocs = process.env.UPDATE_DOCS === '1';
export const out = updateDocs ? resolve(import.meta.dirname, '../../docs') : resolve(import.meta.dirname, 'out');

export interface Session {
  /** The headless Chromium, launched before the file's tests. */
  browser: Browser;
  /** Prints a figure line and keeps it for the figures file. */
  record: (line: string) => void;
}

/**
 * One e2e file's browser and figures: launches Chromium before the file's tests; after them closes it and, if
 * any line was recorded, writes `heading(browser)` and the lines to `out/<figuresFile>`.
 */
export function e2eSession(figuresFile: string, heading: (browser: Browser) => string[]): Session {
  const figures: string[] = [];
  const session: Session = {
    browser: undefined as unknown as Browser,
    record: (line) => {
      console.log(line);
      figures.push(line);
    },
  };
  beforeAll(async () => {
    mkdirSync(out, { recursive: true });
    session.browser = await launch(inject('chromium'));
  });
  afterAll(async () => {
    if (figures.length) {
      writeFileSync(join(out, figuresFile), `${[...heading(session.browser), ...figures].join('\n')}\n`);
      console.log(`e2e: figures in ${join(out, figuresFile)}${updateDocs ? '' : ' (UPDATE_DOCS=1 writes them to docs/)'}`);
    }
    await session.browser?.close();
  });
  return session;
}

export async function launch(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export interface Watch {
  dialogs: string[];
  errors: string[];
  csp: string[];
  failed: string[];
}

/** Records dialogs (dismissed), page errors, CSP violations and failed requests to the plugin. */
export function watch(page: Page): Watch {
  const w: Watch = { dialogs: [], errors: [], csp: [], failed: [] };
  page.on('dialog', (d) => {
    w.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on('pageerror', (e) => w.errors.push(e.message));
  page.on('console', (m) => {
    const t = m.text();
    if (/Content Security Policy/i.test(t)) w.csp.push(t);
  });
  page.on('response', (r) => {
    // A 404 from /diagnosis or /units is an answer (no record, or none with unit detail, at or before the step);
    // any other is a failure.
    if (r.status() >= 400 && r.url().includes(`/plugin/${TAB}/`) && !(r.status() === 404 && /\/(diagnosis|units)\?/.test(r.url()))) w.failed.push(`${r.status()} ${r.url()}`);
  });
  return w;
}

/** The tab's iframe inside TensorBoard's UI, once it exists. */
export async function tabFrame(page: Page, timeout = 30_000): Promise<Frame> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeout) {
    const f = page.frames().find((fr) => fr.url().includes(`plugin_entry.html?name=${TAB}`));
    if (f) return f;
    await page.waitForTimeout(50);
  }
  throw new Error('the Matmul Explainer iframe did not appear');
}

export interface Pixels {
  width: number;
  height: number;
  painted: number;
  colours: number;
}

/** Counts painted (non-transparent, non-white) pixels and distinct colours of a heatmap's cell canvas. */
export async function samplePixels(frame: Frame, heatmapId: string): Promise<Pixels> {
  return frame.evaluate((id) => {
    const c = document.querySelector<HTMLCanvasElement>(`[data-heatmap="${id}"] canvas.mmx-hm-cells`);
    if (!c) throw new Error(`no heatmap ${id}`);
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    const colours = new Set<number>();
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      if (d[i] > 250 && d[i + 1] > 250 && d[i + 2] > 250) continue;
      painted++;
      colours.add((d[i] >> 3) | ((d[i + 1] >> 3) << 5) | ((d[i + 2] >> 3) << 10));
    }
    return { width: c.width, height: c.height, painted, colours: colours.size };
  }, heatmapId);
}

interface HeatmapLayout {
  left: number;
  top: number;
  cellW: number;
  cellH: number;
  groupX: number[];
  groupStart: number[];
  groups: number[];
}

/** Page coordinates of the centre of cell (row, col) of a heatmap in the frame. */
export async function cellPoint(frame: Frame, heatmapId: string, row: number, col: number): Promise<{ x: number; y: number }> {
  const root = (await frame.$(`[data-heatmap="${heatmapId}"]`)) as ElementHandle<HTMLElement>;
  const l = JSON.parse((await root.getAttribute('data-layout'))!) as HeatmapLayout;
  const overlay = (await root.$('canvas.mmx-hm-overlay'))!;
  await overlay.scrollIntoViewIfNeeded();
  const box = (await overlay.boundingBox())!;
  let g = 0;
  for (let i = 0; i < l.groups.length; i++) if (col >= l.groupStart[i]) g = i;
  const x = box.x + l.groupX[g] + (col - l.groupStart[g] + 0.5) * l.cellW;
  const y = box.y + (row + 0.5) * l.cellH;
  return { x, y };
}

/** Hovers a cell and returns the tooltip's title and label -> value rows. */
export async function hoverTooltip(page: Page, frame: Frame, heatmapId: string, row: number, col: number): Promise<{ title: string; rows: Record<string, string> }> {
  const p = await cellPoint(frame, heatmapId, row, col);
  await page.mouse.move(p.x - 3, p.y);
  await page.mouse.move(p.x, p.y);
  await frame.waitForSelector('.mmx-tooltip:not([hidden])', { timeout: 5000 });
  return frame.evaluate(() => {
    const t = document.querySelector('.mmx-tooltip')!;
    const rows: Record<string, string> = {};
    t.querySelectorAll('tr').forEach((tr) => {
      rows[tr.querySelector('th')!.textContent] = tr.querySelector('td')!.textContent!;
    });
    return { title: t.querySelector('.mmx-tooltip-title')!.textContent, rows };
  });
}

/** GET a route of the plugin from inside the frame (same origin, relative URL as the tab uses). */
export async function route<T>(frame: Frame, path: string): Promise<T> {
  return frame.evaluate(async (p) => {
    const r = await fetch(p);
    if (!r.ok) throw new Error(`${r.status} ${p}`);
    return (await r.json()) as unknown;
  }, path) as Promise<T>;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Opens the tab from TensorBoard's Scalars dashboard at `base` in a fresh context (nothing cached) and waits for the
 * tab's first heatmap: `clickMs` from the click to it (the tab's own telemetry, body[data-first-heatmap-at]),
 * `inFrameMs` from the iframe's document start. The caller closes `ctx`.
 */
export async function clickToFirstHeatmap(browser: Browser, base: string): Promise<{ clickMs: number; inFrameMs: number; frame: Frame; ctx: BrowserContext }> {
  const ctx = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/#scalars`);
  const tab = page.getByText('Matmul Explainer', { exact: true }).first();
  await tab.waitFor({ timeout: 30_000 });
  await page.waitForLoadState('networkidle');
  const t0 = Date.now();
  await tab.click();
  const frame = await tabFrame(page);
  await frame.waitForSelector('body[data-first-heatmap-at]', { timeout: 30_000 });
  const clickMs = Number(await frame.evaluate(() => document.body.dataset.firstHeatmapAt)) - t0;
  const inFrameMs = Number(await frame.evaluate(() => document.body.dataset.firstHeatmapMs));
  return { clickMs, inFrameMs, frame, ctx };
}
