/**
 * The tab on models of many layers (e2e/make_many_logs.py: 200 Dense layers, and ResNet50's 54 recorded layer
 * names) in a real TensorBoard and headless Chromium: the time to the first heatmap at 200 layers, every layer
 * reachable (groups expanded, filter, keyboard), the alerted layer marked, the "nothing wrong" lines folded, and
 * screenshots of the overviews (overview_resnet50.png, overview_resnet50_groups.png, overview_dense200.png). Figures go to scale_figures.txt beside the screenshots (e2e/out/,
 * or docs/ with UPDATE_DOCS=1); timings are printed and recorded, never asserted.
 */
import { join } from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { describe, expect, inject, it } from 'vitest';
import type { AlertsResponse, OverviewResponse } from '../src/types';
import { TAB, clickToFirstHeatmap, e2eSession, median, out, route, watch } from './browser';

const manyUrl = inject('manyUrl');
const session = e2eSession('scale_figures.txt', () => [`# The tab on many layers (frontend/e2e/scale.e2e.ts), ${new Date().toISOString()}`]);
const record = session.record;

async function open(page: Page, run: string): Promise<Frame> {
  await page.goto(`${manyUrl}/data/plugin_entry.html?name=${TAB}`);
  const frame = page.mainFrame();
  await frame.waitForSelector('[data-heatmap="overview"]', { timeout: 30_000 });
  const box = frame.locator('.mmx-run', { has: frame.locator('.mmx-run-name', { hasText: run }) }).locator('input[type=checkbox]');
  if (!(await box.isChecked())) await box.check();
  for (const other of await frame.locator('.mmx-run input[type=checkbox]').all()) {
    const name = await other.locator('xpath=..').locator('.mmx-run-name').textContent();
    if (name !== run && (await other.isChecked())) await other.uncheck();
  }
  await expect.poll(() => frame.locator('[data-heatmap="overview"] h3').textContent()).toContain(run);
  await frame.addStyleTag({ content: '.mmx-controls { position: static !important; }' }); // not over the screenshots
  // The alerts arrive after the first draw and redraw the overview with their marks.
  await frame.waitForSelector('.mmx-diagnoses-slot:not(.mmx-loading) > *', { timeout: 30_000 });
  return frame;
}

/** The overview's row labels as drawn and their full names (the titles), top to bottom. */
async function rowLabels(frame: Frame): Promise<{ text: string; title: string; cls: string }[]> {
  return frame.evaluate(() =>
    [...document.querySelectorAll('[data-heatmap="overview"] .mmx-axis-rows .tick')].map((t) => ({
      text: t.querySelector('text')!.textContent ?? '',
      title: t.querySelector('title')!.textContent ?? '',
      cls: t.getAttribute('class') ?? '',
    })),
  );
}

const overviewRows = (frame: Frame) => frame.evaluate(() => Number(document.querySelector<HTMLElement>('[data-heatmap="overview"]')!.dataset.rows));
const renderMs = (frame: Frame, id: string) => frame.evaluate((i) => Number(document.querySelector<HTMLElement>(`[data-heatmap="${i}"]`)!.dataset.renderMs), id);

describe('the tab on 200 and 54 layers', () => {
  it('time from clicking the tab to the first heatmap, 200 layers', async () => {
    const clicks: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { clickMs, frame, ctx } = await clickToFirstHeatmap(session.browser, manyUrl);
      clicks.push(clickMs);
      await frame.waitForSelector('[data-heatmap="wherewhen"]', { timeout: 30_000 });
      expect(await frame.locator('[data-heatmap="wherewhen"]').getAttribute('data-rows')).toBe('200');
      if (i === 2) {
        record(`info: overview of 200 layers (rows drawn: ${await overviewRows(frame)}) render: ${(await renderMs(frame, 'overview')).toFixed(1)} ms`);
        record(`info: where-and-when of 200 layers render: ${(await renderMs(frame, 'wherewhen')).toFixed(1)} ms`);
      }
      await ctx.close();
    }
    const m = median(clicks);
    record(`target time from clicking the tab to the first heatmap, 200 layers, median of 3: ${m.toFixed(0)} ms (bound 1000 ms): ${m <= 1000 ? 'met' : 'missed'} [runs: ${clicks.map((x) => x.toFixed(0)).join(', ')}]`);
    expect(clicks.length).toBe(3);
  });

  it('reaches every one of 200 layers: expanded groups, the filter; the alerted layer is marked', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await open(page, 'dense200');
    const ov = await route<OverviewResponse>(frame, './overview?run=dense200&role=forward');
    const names = ov.layers.map((l) => l.name);
    expect(names.length).toBe(200);
    // By default: groups of at most 24 layers, the one holding the alerted layer open, its row marked.
    const al = await route<AlertsResponse>(frame, './alerts?run=dense200');
    expect(al.alerts.map((a) => a.layer)).toContain('dense_137');
    await expect.poll(async () => (await rowLabels(frame)).find((r) => r.title === 'dense_137')?.cls).toContain('mmx-row-alert');
    expect((await rowLabels(frame)).find((r) => r.title === 'dense_137')!.text).toBe('⚠ dense_137');
    expect(await overviewRows(frame)).toBeLessThan(60);
    await frame.locator('#mmx-overview').screenshot({ path: join(out, 'overview_dense200.png') });
    // Expand all: every layer has a labelled row of its own, none truncated.
    await frame.getByRole('button', { name: 'Expand all' }).click();
    await expect.poll(() => overviewRows(frame)).toBeGreaterThan(200);
    const labels = await rowLabels(frame);
    expect(labels.length).toBe(await overviewRows(frame));
    const layerRows = labels.filter((r) => !r.cls.includes('mmx-row-group'));
    expect(layerRows.map((r) => r.title)).toEqual(names);
    expect(layerRows.every((r) => r.text.endsWith(r.title) && !r.text.includes('…'))).toBe(true);
    // The filter (a regex): only the matching layers.
    await frame.locator('input.mmx-filter').fill('^dense_1[0-9][0-9]$');
    await expect.poll(() => frame.locator('.mmx-overview-count').textContent()).toBe('100 of 200 layers match');
    const matched = (await rowLabels(frame)).filter((r) => !r.cls.includes('mmx-row-group')).map((r) => r.title);
    expect(matched).toEqual(names.filter((n) => /^dense_1[0-9][0-9]$/.test(n)));
    // The diagnosis list folds the layers with nothing wrong into one line.
    const fold = frame.locator('.mmx-diagnoses-fold > summary');
    expect(await fold.textContent()).toMatch(/^\d+ layers: nothing wrong$/);
    expect(await frame.locator('.mmx-diagnoses li').count()).toBe(200);
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('moves through every layer with the keyboard, and saves the ResNet50-shaped overview', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await open(page, 'resnet50');
    const names = (await route<OverviewResponse>(frame, './overview?run=resnet50&role=forward')).layers.map((l) => l.name);
    expect(names.length).toBe(54);
    const draws = [await renderMs(frame, 'overview')];
    await frame.locator('#mmx-overview').screenshot({ path: join(out, 'overview_resnet50.png') });
    // ↓ from the top visits every row; each layer row becomes the selected layer.
    const seen = new Set<string>();
    const overlay = frame.locator('[data-heatmap="overview"] canvas.mmx-hm-overlay');
    await overlay.focus();
    const rows = await overviewRows(frame);
    for (let i = 0; i < rows; i++) await page.keyboard.press('ArrowUp');
    for (let i = 0; i < rows; i++) {
      if (i) await page.keyboard.press('ArrowDown');
      const emph = await frame.locator('[data-heatmap="overview"] .mmx-axis-rows .mmx-emph title').allTextContents();
      if (emph.length) seen.add(emph[0]);
    }
    // (a group row on the way is outlined and emphasised too; every layer must have been the selected one)
    expect(names.filter((n) => !seen.has(n))).toEqual([]);
    // Enter opens the selected layer in the layer detail.
    await page.keyboard.press('Enter');
    await expect.poll(() => frame.locator('#mmx-layer [data-heatmap="timeline"] h3').textContent()).toContain('predictions');
    // Groups closed: one row per stage, each a pooled row.
    await frame.getByRole('button', { name: 'Collapse all' }).click();
    await expect.poll(() => overviewRows(frame)).toBe(6);
    draws.push(await renderMs(frame, 'overview'));
    await frame.locator('#mmx-overview').screenshot({ path: join(out, 'overview_resnet50_groups.png') });
    record(`info: ResNet50-shaped overview render (54 layers open, then 6 group rows): ${draws.map((x) => x.toFixed(1)).join(', ')} ms`);
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });
});
