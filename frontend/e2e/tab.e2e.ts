/**
 * The tab in a real TensorBoard (two servers over logs written by our own summary ops), in headless Debian
 * Chromium. Saves screenshots and writes the measured figures (browser_figures.txt) to e2e/out/ (ignored by
 * git); with UPDATE_DOCS=1 to docs/ instead, refreshing the committed ones. Timing figures are printed and
 * recorded, never asserted.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { describe, expect, inject, it } from 'vitest';
import type { AlertsResponse as Alerts, DiagnosisResponse as Diagnosis, HeatmapResponse, RunsResponse, UnitsResponse } from '../src/types';
import { TAB, XSS_RUN, cellPoint, clickToFirstHeatmap, e2eSession, hoverTooltip, median, out, route, samplePixels, tabFrame, watch } from './browser';

const demoUrl = inject('demoUrl');
const bigUrl = inject('bigUrl');
const kerasUrl = inject('kerasUrl');
const session = e2eSession('browser_figures.txt', (browser) => [
  '# Browser figures of the Matmul Explainer tab (frontend/e2e/tab.e2e.ts, `make browser-test`; UPDATE_DOCS=1 writes them here).',
  `# ${new Date().toISOString()} · headless Chromium ${browser?.version() ?? ''} · logs written by tb_matmul_explainer.summary`,
]);
const info = session.record;

function figure(what: string, value: number, bound: number, unit = 'ms', note = ''): void {
  info(`target ${what}: ${value.toFixed(1)} ${unit} (bound ${bound} ${unit}): ${value <= bound ? 'met' : 'missed'}${note ? ` [${note}]` : ''}`);
}

async function openEntry(page: Page, base: string): Promise<Frame> {
  await page.goto(`${base}/data/plugin_entry.html?name=${TAB}`);
  await page.waitForSelector('[data-heatmap="overview"]', { timeout: 30_000 });
  return page.mainFrame();
}

/** Element screenshots without the sticky control bar drawn over them. */
async function unstick(frame: Frame): Promise<void> {
  await frame.addStyleTag({ content: '.mmx-controls { position: static !important; }' });
}

/** Waits until every view of the layer detail has drawn. */
async function waitViews(frame: Frame, ids = ['overview', 'wherewhen', 'units', 'unitsteps', 'timeline']): Promise<void> {
  for (const id of ids) await frame.waitForSelector(`[data-heatmap="${id}"] canvas.mmx-hm-cells`, { timeout: 30_000 });
}

/** Waits until the alerts panel, the overview's diagnosis lines and the layer's diagnosis card show `run`. */
async function waitDiagnosis(frame: Frame, run: string): Promise<void> {
  await expect.poll(() => frame.locator('[data-view="alerts"] h2').textContent(), { timeout: 30_000 }).toContain(run);
  for (const slot of ['.mmx-alerts-slot', '.mmx-diagnoses-slot', '.mmx-diagnosis-slot']) {
    await frame.waitForSelector(`${slot}:not(.mmx-loading) > *`, { timeout: 30_000 });
  }
}

async function selectRuns(frame: Frame, runs: string[]): Promise<void> {
  for (const r of runs) {
    const box = frame.locator('.mmx-run', { has: frame.locator('.mmx-run-name', { hasText: r }) }).locator('input[type=checkbox]');
    if (!(await box.isChecked())) await box.check();
  }
}

describe('the tab in TensorBoard', () => {
  it('is listed by TensorBoard and opens in the real UI', async () => {
    const listing = (await (await fetch(`${demoUrl}/data/plugins_listing`)).json()) as Record<string, { enabled: boolean; tab_name: string; loading_mechanism: { type: string; module_path: string } }>;
    expect(listing[TAB].enabled).toBe(true);
    expect(listing[TAB].tab_name).toBe('Matmul Explainer');
    expect(listing[TAB].loading_mechanism).toEqual({ type: 'IFRAME', module_path: `/data/plugin/${TAB}/index.js` });

    const page = await session.browser.newPage({ viewport: { width: 1500, height: 1100 } });
    const w = watch(page);
    await page.goto(`${demoUrl}/#${TAB}`);
    const frame = await tabFrame(page);
    await waitViews(frame);
    await expect.poll(() => page.getByText('Matmul Explainer', { exact: true }).first().isVisible()).toBe(true);
    // The picture for the README: the run with dying ReLUs.
    await selectRuns(frame, ['dying']);
    await frame.locator('.mmx-run', { hasText: XSS_RUN }).locator('input').uncheck();
    await expect.poll(() => frame.locator('[data-heatmap="overview"] h3').textContent()).toContain('dying');
    await waitViews(frame);
    await waitDiagnosis(frame, 'dying');
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(out, 'tab.png') });
    expect(w.csp).toEqual([]);
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it(`renders a run named ${XSS_RUN} as text (no dialog, no element)`, async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, demoUrl);
    await selectRuns(frame, [XSS_RUN]);
    await waitViews(frame);
    const name = frame.locator('.mmx-run-name', { hasText: XSS_RUN });
    await expect.poll(() => name.isVisible()).toBe(true);
    expect(await name.textContent()).toBe(XSS_RUN);
    const titles = await frame.locator('[data-heatmap="overview"] h3').allTextContents();
    expect(titles.join(' ')).toContain(XSS_RUN);
    expect(await frame.locator('img').count()).toBe(0);
    await page.waitForTimeout(500);
    expect(w.dialogs).toEqual([]);
    expect(w.errors).toEqual([]);
    await page.close();
  });

  it('draws every single-run view with non-blank pixels, and saves screenshots', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const frame = await openEntry(page, demoUrl);
    // Show the run with dying ReLUs alone.
    await selectRuns(frame, ['dying']);
    await frame.locator('.mmx-run', { hasText: XSS_RUN }).locator('input').uncheck();
    await expect.poll(() => frame.locator('[data-heatmap="overview"] h3').textContent()).toContain('dying');
    await waitViews(frame);
    for (const id of ['overview', 'wherewhen', 'units', 'unitsteps', 'timeline']) {
      const px = await samplePixels(frame, id);
      expect(px.painted, `${id} painted pixels`).toBeGreaterThan(0.3 * px.width * px.height);
      expect(px.colours, `${id} distinct colours`).toBeGreaterThan(2);
    }
    // The alerts panel, the overview's diagnosis lines and the layer detail's diagnosis card have arrived.
    await waitDiagnosis(frame, 'dying');
    await frame.waitForSelector('.mmx-diagnosis .mmx-diagnosis-text', { timeout: 30_000 });
    await unstick(frame);
    await frame.locator('#mmx-alerts').screenshot({ path: join(out, 'alerts.png') });
    await frame.locator('#mmx-overview').screenshot({ path: join(out, 'overview.png') });
    await frame.locator('#mmx-wherewhen').screenshot({ path: join(out, 'where-and-when.png') });
    await frame.locator('#mmx-layer').screenshot({ path: join(out, 'layer-detail.png') });
    await page.close();
  });

  it('tooltips show the exact values the backend sent', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const frame = await openEntry(page, demoUrl);
    await selectRuns(frame, ['healthy']);
    await frame.locator('.mmx-run', { hasText: XSS_RUN }).locator('input').uncheck();
    await expect.poll(() => frame.locator('[data-heatmap="overview"] h3').textContent()).toContain('healthy');
    await waitViews(frame);
    await waitDiagnosis(frame, 'healthy'); // what arrives late moves the heatmaps: hover only after it
    type Ov = { layers: { name: string; near_zero_counts: number[]; near_zero_sums: number[]; near_zero_fraction: number }[] };
    const ov = await route<Ov>(frame, './overview?run=healthy&role=forward');
    // Overview row 1, first column (PP); default measure: share of counts within near-zero results.
    const tip = await hoverTooltip(page, frame, 'overview', 1, 0);
    expect(tip.title).toBe(`${ov.layers[1].name} · PP`);
    expect(Number(tip.rows.count)).toBe(ov.layers[1].near_zero_counts[0]);
    expect(Number(tip.rows.sum)).toBe(ov.layers[1].near_zero_sums[0]);
    // The near-zero fraction column.
    const tip2 = await hoverTooltip(page, frame, 'overview', 2, 9);
    expect(Number(tip2.rows['near-zero fraction'].split(' ')[0])).toBe(ov.layers[2].near_zero_fraction);
    // Where and when: layer 0 at the first step.
    const h = await route<{ layers: string[]; steps: number[]; values: number[][] }>(frame, './heatmap?run=healthy&role=forward');
    const tip3 = await hoverTooltip(page, frame, 'wherewhen', 0, 0);
    expect(tip3.title).toBe(`${h.layers[0]} · step ${h.steps[0]}`);
    expect(Number(tip3.rows['near-zero fraction'].split(' ')[0])).toBe(h.values[0][0]);
    await page.close();
  });

  it('clicking a where-and-when cell selects that layer and step', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const frame = await openEntry(page, demoUrl);
    await waitViews(frame);
    await waitDiagnosis(frame, XSS_RUN);
    const h = await route<{ layers: string[]; steps: number[] }>(frame, `./heatmap?run=${encodeURIComponent(XSS_RUN)}&role=forward`);
    const p = await cellPoint(frame, 'wherewhen', 2, 1);
    await page.mouse.click(p.x, p.y);
    await expect.poll(() => frame.locator('.mmx-layer-select').inputValue()).toBe(h.layers[2]);
    await expect.poll(() => frame.locator('.mmx-step-value').textContent()).toContain(String(h.steps[1]));
    await expect.poll(() => frame.locator('[data-heatmap="units"] h3').textContent()).toContain(`step ${h.steps[1]}`);
    await page.close();
  });

  it('the layer detail shows /diagnosis\'s text, causes and alerts for the layer', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, demoUrl);
    await waitViews(frame);
    const check = async (run: string, layer: string, step: number | null) => {
      const q = `run=${encodeURIComponent(run)}&role=forward&layer=${encodeURIComponent(layer)}${step === null ? '' : `&step=${step}`}`;
      const d = await route<Diagnosis>(frame, `./diagnosis?${q}`);
      const card = frame.locator(`.mmx-diagnosis[data-layer="${layer}"]`);
      await expect.poll(() => card.locator('.mmx-diagnosis-text').textContent(), { timeout: 30_000 }).toBe(d.text);
      const causes = Object.entries(d.causes).sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1));
      expect(await card.locator('.mmx-cause-name').allTextContents()).toEqual(causes.map(([name]) => name));
      expect(await card.locator('.mmx-cause').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.share))).toEqual(causes.map(([, v]) => String(v)));
      expect(await card.locator('.mmx-layer-alerts .mmx-alert-text').allTextContents()).toEqual(d.alerts.map((a) => a.message));
      return d;
    };
    // The default run (named like an HTML injection) opens on hidden_b, the layer with the most near-zero results:
    // its 16 zeroed kernel columns are dead units, and the diagnosis says so.
    await selectRuns(frame, [XSS_RUN]);
    const layer = await frame.locator('.mmx-layer-select').inputValue();
    expect(layer).toBe('hidden_b');
    const d = await check(XSS_RUN, layer, null);
    expect(d.alerts.map((a) => a.kind)).toEqual(['dead_units']);
    expect(d.dead_rows.length).toBe(16);
    expect(await frame.locator('.mmx-diagnosis .mmx-dead-rows').textContent()).toContain('0, 1, 2');
    // Another layer.
    await frame.locator('.mmx-layer-select').selectOption('dense');
    await check(XSS_RUN, 'dense', null);
    // The overview's line for each layer is /alerts's diagnosis text for the role.
    const al = await route<Alerts>(frame, `./alerts?run=${encodeURIComponent(XSS_RUN)}`);
    const lines = al.diagnoses.filter((x) => x.role === 'forward');
    await expect.poll(() => frame.locator('.mmx-diagnoses li').count()).toBe(lines.length);
    expect(await frame.locator('.mmx-diagnoses .mmx-diagnoses-layer').allTextContents()).toEqual(lines.map((x) => x.layer));
    expect(await frame.locator('.mmx-diagnoses .mmx-diagnoses-text').allTextContents()).toEqual(lines.map((x) => x.text));
    expect(await frame.locator('img').count()).toBe(0);
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('the alerts panel lists /alerts\'s alerts in order; a click selects the layer, role and first step', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, demoUrl);
    const panel = async (run: string) => {
      const al = await route<Alerts>(frame, `./alerts?run=${encodeURIComponent(run)}`);
      await expect.poll(() => frame.locator('[data-view="alerts"] h2').textContent(), { timeout: 30_000 }).toContain(run);
      const items = frame.locator('[data-view="alerts"] li');
      expect(await items.count()).toBe(al.alerts.length);
      expect(await items.locator('.mmx-alert-text').allTextContents()).toEqual(al.alerts.map((a) => a.message));
      expect(await items.locator('.mmx-alert-layer').allTextContents()).toEqual(al.alerts.map((a) => a.layer));
      expect(await items.locator('.mmx-alert-step').allTextContents()).toEqual(al.alerts.map((a) => `since step ${a.first_step}`));
      expect(await items.locator('.mmx-alert-sev').allTextContents()).toEqual(al.alerts.map((a) => `${(a.severity * 100).toFixed(0)}%`));
      expect(await items.locator('.mmx-severity').evaluateAll((els) => els.map((e) => Number((e as HTMLElement).style.getPropertyValue('--sev'))))).toEqual(
        al.alerts.map((a) => a.severity),
      );
      return al;
    };
    // The default run: one alert, the dead units of hidden_b since step 60.
    const al = await panel(XSS_RUN);
    expect(al.alerts.map((a) => [a.kind, a.layer, a.role, a.first_step])).toEqual([['dead_units', 'hidden_b', 'forward', 60]]);
    await frame.locator('.mmx-layer-select').selectOption('dense');
    await frame.locator('[data-view="alerts"] li').first().click();
    await expect.poll(() => frame.locator('.mmx-layer-select').inputValue()).toBe('hidden_b');
    await expect.poll(() => frame.locator('.mmx-step-value').textContent()).toMatch(/^60 /);
    const d = await route<Diagnosis>(frame, `./diagnosis?run=${encodeURIComponent(XSS_RUN)}&role=forward&layer=hidden_b&step=60`);
    await expect.poll(() => frame.locator('.mmx-diagnosis[data-layer="hidden_b"] .mmx-diagnosis-text').textContent(), { timeout: 30_000 }).toBe(d.text);
    expect(d.step).toBe(60);
    expect(d.alerts.map((a) => a.kind)).toContain('dead_units');
    await expect.poll(() => frame.locator('[data-heatmap="units"] h3').textContent()).toContain('step 60');
    // The run with dying ReLUs (recorded with the summary ops, forward and kernel gradient only): its alerts in the
    // backend's order; a click opens the alert's layer and role.
    await selectRuns(frame, ['dying']);
    await frame.locator('.mmx-run', { hasText: XSS_RUN }).locator('input').uncheck();
    const al2 = await panel('dying');
    expect(al2.alerts.length).toBeGreaterThan(0);
    const sev = al2.alerts.map((a) => a.severity);
    expect(sev).toEqual([...sev].sort((a, b) => b - a));
    const a = al2.alerts[0];
    await frame.locator('[data-view="alerts"] li').nth(0).click();
    await expect.poll(() => frame.locator('select.mmx-role').inputValue()).toBe(a.role);
    await expect.poll(() => frame.locator('.mmx-layer-select').inputValue()).toBe(a.layer);
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('compares runs side by side and as a difference, missing layers shown as missing', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1500, height: 1000 } });
    const frame = await openEntry(page, demoUrl);
    await selectRuns(frame, ['healthy', 'dying']);
    await frame.locator('.mmx-run', { hasText: XSS_RUN }).locator('input').uncheck();
    await frame.waitForSelector('[data-heatmap="compare-diff"] canvas', { timeout: 30_000 });
    const runs = await frame.locator('[data-heatmap^="compare-overview-"]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.run));
    expect(runs.sort()).toEqual(['dying', 'healthy']);
    for (const id of ['compare-overview-0', 'compare-overview-1', 'compare-diff', 'compare-fractions', 'compare-wherewhen-0', 'compare-wherewhen-1', 'compare-wherewhen-diff']) {
      const px = await samplePixels(frame, id);
      expect(px.painted, `${id} painted`).toBeGreaterThan(0.3 * px.width * px.height);
    }
    await unstick(frame);
    await frame.locator('#mmx-compare').screenshot({ path: join(out, 'compare.png') });
    // Add the run that has a differently named layer: it is missing in the others, not zero.
    await selectRuns(frame, [XSS_RUN]);
    await expect.poll(() => frame.locator('[data-heatmap^="compare-overview-"]').count()).toBe(3);
    await frame.waitForSelector('[data-heatmap="compare-fractions"] .mmx-legend-missing');
    await waitDiagnosis(frame, 'healthy');
    const runs3 = ['healthy', 'dying', XSS_RUN];
    const c = await route<{ runs: string[]; layers: string[]; results: { layers: (object | null)[] }[] }>(
      frame,
      `./compare?view=overview&role=forward&${runs3.map((r) => `run=${encodeURIComponent(r)}`).join('&')}`,
    );
    const row = c.layers.indexOf('dense_1');
    const col = c.runs.indexOf(XSS_RUN);
    expect(c.results[col].layers[row]).toBeNull();
    const tip = await hoverTooltip(page, frame, 'compare-fractions', row, col);
    expect(tip.title).toBe(`dense_1 · ${XSS_RUN}`);
    expect(tip.rows.layer).toBe('missing in this run');
    const px = await samplePixels(frame, 'compare-fractions');
    expect(px.colours).toBeGreaterThan(2);
    await page.close();
  });

  it('exports the current heatmap as CSV and PNG', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const frame = await openEntry(page, demoUrl);
    const card = frame.locator('[data-heatmap="overview"]');
    const [csv] = await Promise.all([page.waitForEvent('download'), card.getByRole('button', { name: 'CSV' }).click()]);
    const text = readFileSync((await csv.path()), 'utf8');
    expect(text.split('\r\n')[0]).toBe('layer,PP,PN,NP,NN,ZP,ZN,ZZ,PZ,NZ,near-zero results');
    expect(text.split('\r\n')[1].startsWith('dense,')).toBe(true);
    expect(csv.suggestedFilename()).toMatch(/\.csv$/);
    const [png] = await Promise.all([page.waitForEvent('download'), card.getByRole('button', { name: 'PNG' }).click()]);
    const bytes = readFileSync((await png.path()));
    expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    await page.close();
  });

  it('shows a visible error state and an empty state', async () => {
    const page = await session.browser.newPage();
    await page.route(`**/plugin/${TAB}/runs`, (r) => r.fulfill({ status: 500, contentType: 'text/plain', body: 'the data provider failed' }));
    await page.goto(`${demoUrl}/data/plugin_entry.html?name=${TAB}`);
    const err = page.locator('[data-state="error"]');
    await err.waitFor();
    expect(await err.textContent()).toContain('the data provider failed');
    expect(await err.isVisible()).toBe(true);
    await page.unroute(`**/plugin/${TAB}/runs`);
    await page.route(`**/plugin/${TAB}/runs`, (r) => r.fulfill({ status: 200, contentType: 'application/json', body: '{"version":1,"runs":[]}' }));
    await page.reload();
    const empty = page.locator('[data-state="empty"]');
    await empty.waitFor();
    expect(await empty.textContent()).toContain('tb_matmul_explainer.keras.ExplainerCallback(log_dir)');
    await page.screenshot({ path: join(out, 'empty-state.png') });
    await page.close();
  });
});

/** Shows `run` alone (unchecks every other run). */
async function showOnly(frame: Frame, run: string): Promise<void> {
  await selectRuns(frame, [run]);
  const others = frame.locator('.mmx-run', { hasNot: frame.locator('.mmx-run-name', { hasText: run }) }).locator('input[type=checkbox]');
  for (let i = 0; i < (await others.count()); i++) if (await others.nth(i).isChecked()) await others.nth(i).uncheck();
  await expect.poll(() => frame.locator('[data-heatmap="overview"] h3').textContent(), { timeout: 30_000 }).toContain(run);
}

/** The facts (dt -> dd) of a pair-matrix card. */
async function facts(frame: Frame, layer: string): Promise<[string, string][]> {
  return frame.locator(`.mmx-matrix[data-layer="${layer}"] dt`).evaluateAll((els) => els.map((e) => [e.textContent ?? '', e.nextElementSibling?.textContent ?? ''] as [string, string]));
}

// Logs written by real Keras training: model.fit with ExplainerCallback (e2e/make_keras_logs.py). Both runs train
// Conv1D(dilation 2) "dilated" -> Dense(8) "hidden" -> Dense(1) "one_unit"; "dilated" (a subclass with its own
// call()) cannot be recorded.
describe('real Keras training with edge cases (model.fit + ExplainerCallback)', () => {
  const BATCH1 = 'batch1/train';
  const NONFINITE = 'nonfinite/train';
  const DYING = 'dying/train';
  const TRANSFORMER = 'transformer/train';
  const REASON = 'OwnCallConv1D overrides call(), so its computation is not known to be the one of the Keras layer it extends, which the recorder reproduces';
  const q = encodeURIComponent;

  it('names the layer that was not recorded, with its reason, in each run', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, kerasUrl);
    const runs = await route<RunsResponse>(frame, './runs');
    expect(runs.runs.filter((r) => r.run !== DYING && r.run !== TRANSFORMER).map((r) => [r.run, r.layers.map((l) => l.name), r.notRecorded])).toEqual([
      [BATCH1, ['hidden', 'one_unit'], [{ layer: 'dilated', reason: REASON }]],
      [NONFINITE, ['hidden', 'one_unit'], [{ layer: 'dilated', reason: REASON }]],
    ]);
    const notice = frame.locator('[data-view="overview"] .mmx-not-recorded li');
    await expect.poll(() => notice.allTextContents(), { timeout: 30_000 }).toEqual([`Not recorded: dilated — ${REASON}`]);
    expect(await notice.first().isVisible()).toBe(true);
    expect(await frame.locator('.mmx-run .mmx-badge-note').allTextContents()).toEqual(['1 not recorded', '1 not recorded']);
    expect(await frame.locator('.mmx-run .mmx-badge-note').first().getAttribute('title')).toBe(`dilated: ${REASON}`);
    // The other run says so too; and the layer that was not recorded is in no heatmap.
    await showOnly(frame, NONFINITE);
    await expect.poll(() => notice.allTextContents()).toEqual([`Not recorded: dilated — ${REASON}`]);
    expect(await frame.locator('.mmx-layer-select option').allTextContents()).toEqual(['hidden', 'one_unit']);
    await unstick(frame);
    await frame.locator('#mmx-overview').screenshot({ path: join(out, 'keras-not-recorded.png') });
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('a Transformer: its attention einsums are found by their Keras paths, one unit per head', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, kerasUrl);
    await showOnly(frame, TRANSFORMER);
    const SCORES = 'block_1/attention/attention_scores';
    const VALUES = 'block_1/attention/attention_values';
    const runs = await route<RunsResponse>(frame, './runs');
    const run = runs.runs.find((r) => r.run === TRANSFORMER)!;
    expect(run.notRecorded ?? []).toEqual([]);
    const attention = run.layers.filter((l) => l.name.startsWith('block_1/attention/'));
    expect(attention.map((l) => [l.name, l.op, l.units])).toEqual(expect.arrayContaining([
      [SCORES, 'attention_scores', 4], [VALUES, 'attention_values', 4]]));
    expect(attention.find((l) => l.name === SCORES)!.roles.forward.operands).toEqual(['query', 'key']);
    for (const role of ['forward', 'kernel_gradient', 'input_gradient']) {
      const h = await route<HeatmapResponse>(frame, `./heatmap?run=${q(TRANSFORMER)}&role=${role}`);
      expect(h.layers, role).toEqual(expect.arrayContaining([SCORES, VALUES]));
      expect(h.steps, role).toEqual([0, 1, 2, 3]);
      expect(h.values.flat().every((v) => v !== null), role).toBe(true);
    }
    // The tab lists them by their paths; the scores' card names its operands; one row per head.
    await expect.poll(() => frame.locator('.mmx-layer-select option').allTextContents(), { timeout: 30_000 })
      .toEqual(expect.arrayContaining([SCORES, VALUES]));
    await frame.locator('.mmx-layer-select').selectOption(SCORES);
    // Its per-unit pairs are from step 0, the fit's first recorded step (unit detail every 10th recorded step by
    // default); a caption above them says so.
    const units = frame.locator('[data-heatmap="units"]');
    await expect.poll(() => units.locator('h3').textContent(), { timeout: 30_000 }).toBe(`${SCORES} · units × pairs at step 0`);
    const note = frame.locator('.mmx-unit-detail');
    expect([await note.getAttribute('data-layer-step'), await note.getAttribute('data-units-step')]).toEqual(['3', '0']);
    expect(await note.textContent()).toMatch(/^Per-unit pairs at step 0, the latest step with unit detail at or before step 3 /);
    await frame.waitForSelector('[data-heatmap="units"] canvas.mmx-hm-cells', { timeout: 30_000 });
    expect(await units.getAttribute('data-rows')).toBe('4');
    const thresholds = Object.fromEntries(await facts(frame, SCORES))['thresholds'];
    expect(thresholds).toMatch(/^query .*, key .*, result /);
    const chain = frame.locator(`.mmx-chain[data-layer="${SCORES}"] .mmx-chain-step`);
    await expect.poll(() => chain.evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.step)), { timeout: 30_000 })
      .toEqual(['scores Q·Kᵀ', 'dJ/dK', 'dJ/dQ']);
    await unstick(frame);
    await frame.locator('#mmx-layer').screenshot({ path: join(out, 'keras-transformer-attention.png') });
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('dying ReLUs: the alert leads to the dying layer, whose chain shows the activation step\'s dead units', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const w = watch(page);
    const frame = await openEntry(page, kerasUrl);
    await showOnly(frame, DYING);
    const al = await route<Alerts>(frame, `./alerts?run=${q(DYING)}`);
    expect([al.alerts[0].kind, al.alerts[0].layer, al.alerts[0].role]).toEqual(['dead_units', 'hidden_2', 'activation']);
    const first = frame.locator('[data-view="alerts"] li.mmx-alert').first();
    await expect.poll(() => first.locator('.mmx-alert-layer').textContent(), { timeout: 30_000 }).toBe('hidden_2');
    await first.click();
    const chain = frame.locator('.mmx-chain[data-layer="hidden_2"]');
    await expect.poll(() => chain.count(), { timeout: 30_000 }).toBe(1);
    expect(await frame.locator('.mmx-layer-select').inputValue()).toBe('hidden_2');
    const act = chain.locator('.mmx-chain-step[data-step="activation relu"]');
    await expect.poll(() => act.textContent()).toContain('100% inactive · 16 of 16 units dead');
    expect(await act.getAttribute('aria-current')).toBe('true');
    expect(await act.getAttribute('class')).toContain('mmx-chain-alarm');
    expect(await chain.locator('.mmx-chain-step').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.step))).toEqual(
      ['input features', 'matmul x·W', 'bias', 'activation relu', 'dJ/da', 'f′(z)', 'dJ/dz', 'dJ/dW']);
    expect(await chain.textContent()).not.toMatch(/NaN|undefined/);
    await unstick(frame);
    await frame.locator('#mmx-layer').screenshot({ path: join(out, 'keras-dying-relu-chain.png') });
    // The step opens its role: dJ/dW is the kernel gradient.
    await chain.locator('.mmx-chain-step[data-step="dJ/dW"]').click();
    await expect.poll(() => frame.locator('.mmx-chain-step[aria-current="true"]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.role))).toEqual(['kernel_gradient']);
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('batch size 1: every step is there, and the one-unit layer\'s heatmaps render', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, kerasUrl);
    await showOnly(frame, BATCH1);
    for (const role of ['forward', 'kernel_gradient']) {
      const h = await route<HeatmapResponse>(frame, `./heatmap?run=${q(BATCH1)}&role=${role}`);
      expect(h.layers, role).toEqual(['hidden', 'one_unit']);
      expect(h.steps, role).toEqual([0, 1, 2, 3, 4, 5]);
      expect(h.values.flat().every((v) => v !== null), role).toBe(true);
    }
    await waitViews(frame);
    const ww = frame.locator('[data-heatmap="wherewhen"]');
    expect([await ww.getAttribute('data-rows'), await ww.getAttribute('data-cols')]).toEqual(['2', '6']);
    await expect.poll(() => frame.locator('.mmx-step-value').textContent()).toBe('5 (latest) · 6/6');
    // The one-unit layer, all result cells: with batch size 1 each record has a single result cell.
    await frame.locator('.mmx-layer-select').selectOption('one_unit');
    await frame.locator('select.mmx-scope').selectOption('all');
    // The per-unit pairs: from step 0, the only step with unit detail (kept every 10th recorded step and at the
    // fit's first); the other views have all six steps.
    const u = await route<UnitsResponse>(frame, `./units?run=${q(BATCH1)}&role=forward&layer=one_unit`);
    expect([u.step, u.units, u.group_size, u.cells]).toEqual([0, 1, 1, [1]]);
    expect(u.counts[0].reduce((a, b) => a + b, 0)).toBe(8); // 8 products: hidden's 8 outputs x the unit's 8 weights
    const shapes: Record<string, [string, string, string]> = {
      units: ['one_unit · units × pairs at step 0', '1', '10'],
      unitsteps: ['one_unit · units × steps', '1', '6'],
      timeline: ['one_unit · pairs over steps', '9', '6'],
    };
    for (const [id, [title, rows, cols]] of Object.entries(shapes)) {
      const hm = frame.locator(`[data-heatmap="${id}"]`);
      await expect.poll(() => hm.locator('h3').textContent(), { timeout: 30_000 }).toBe(title);
      await frame.waitForSelector(`[data-heatmap="${id}"] canvas.mmx-hm-cells`, { timeout: 30_000 });
      expect([await hm.getAttribute('data-rows'), await hm.getAttribute('data-cols')], id).toEqual([rows, cols]);
      const px = await samplePixels(frame, id);
      expect(px.painted, `${id} painted pixels`).toBeGreaterThan(0.3 * px.width * px.height);
      expect(px.colours, `${id} distinct colours`).toBeGreaterThanOrEqual(id === 'unitsteps' ? 1 : 2);
    }
    const note = frame.locator('.mmx-unit-detail');
    expect([await note.getAttribute('data-layer-step'), await note.getAttribute('data-units-step')]).toEqual(['5', '0']);
    expect(await note.isVisible()).toBe(true);
    // Its single row's tooltip carries the backend's exact values.
    const tip = await hoverTooltip(page, frame, 'units', 0, 9);
    expect(tip.title).toBe('one_unit · unit 0 · near-zero results');
    expect(tip.rows['near-zero cells']).toBe(`${u.near_zero_cells[0]} of 1`);
    await unstick(frame);
    await frame.locator('#mmx-layer').screenshot({ path: join(out, 'keras-one-unit-batch1.png') });
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });

  it('a NaN in one batch: the alerts, the layer\'s non-finite steps, and the diagnosis at that step say so', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const w = watch(page);
    const frame = await openEntry(page, kerasUrl);
    await showOnly(frame, NONFINITE);
    await waitDiagnosis(frame, NONFINITE);
    // At the latest step (3) every weight is NaN (step 2's NaN gradients were applied): the alerts panel lists the
    // non-finite values of each layer and role.
    const all = (m: string) => `non-finite values (NaN or inf) in the ${m}.`;
    const al = await route<Alerts>(frame, `./alerts?run=${q(NONFINITE)}`);
    const matmulRoles = (a: { role: string }) => a.role === 'forward' || a.role === 'kernel_gradient';
    const nonFinite = al.alerts.filter((a) => a.kind === 'non_finite' && matmulRoles(a)).map((a) => [a.layer, a.role, a.message].join(' | ')).sort();
    expect(nonFinite).toEqual([
      `hidden | forward | ${all('input, kernel, result')}`,
      `hidden | kernel_gradient | ${all('input, output gradient, result')}`,
      `one_unit | forward | ${all('input, kernel, result')}`,
      `one_unit | kernel_gradient | ${all('input, output gradient, result')}`,
    ]);
    const panel = frame.locator('[data-view="alerts"] li[data-kind="non_finite"]');
    const shown = await panel.evaluateAll((els) => els.map((e) => [e.querySelector('.mmx-alert-layer')!.textContent, e.querySelector('.mmx-alert-role')!.textContent, e.querySelector('.mmx-alert-text')!.textContent]));
    const matmulShown = shown.filter((x) => x[1] === 'forward (outputs)' || x[1] === 'kernel gradient');
    expect(matmulShown.map((x) => [x[0], x[1] === 'forward (outputs)' ? 'forward' : 'kernel_gradient', x[2]].join(' | ')).sort()).toEqual(nonFinite);
    expect(shown.length).toBe(al.alerts.filter((x) => x.kind === 'non_finite').length);
    // hidden (forward): its timeline names steps 2 and 3; clicking 2 shows the step where the NaN came in.
    await frame.locator('.mmx-layer-select').selectOption('hidden');
    const note = frame.locator('.mmx-nonfinite-steps');
    await expect.poll(() => note.getAttribute('data-steps'), { timeout: 30_000 }).toBe('2,3');
    expect(await note.textContent()).toContain('Non-finite values (NaN or inf) in hidden’s products at 2 of 4 recorded steps');
    await note.getByRole('button', { name: '2', exact: true }).click();
    await expect.poll(() => frame.locator('.mmx-step-value').textContent()).toBe('2 · 3/4');
    const d = await route<Diagnosis>(frame, `./diagnosis?run=${q(NONFINITE)}&role=forward&layer=hidden&step=2`);
    expect(d.step).toBe(2);
    expect(d.text).toContain('Non-finite values (NaN or inf) in the input, result.');
    const card = frame.locator('.mmx-diagnosis[data-layer="hidden"]');
    await expect.poll(() => card.locator('.mmx-diagnosis-text').textContent(), { timeout: 30_000 }).toBe(d.text);
    expect(await card.locator('.mmx-layer-alerts li[data-kind="non_finite"] .mmx-alert-text').allTextContents()).toEqual([all('input, result')]);
    // The pair matrix counts them: the NaN reached 12 of hidden's inputs (3 positions of the dilated convolution x 4
    // filters) and its 8 results for that sample.
    await expect.poll(() => frame.locator('.mmx-matrix[data-layer="hidden"] .mmx-sub').textContent()).toContain('step 2');
    expect(await facts(frame, 'hidden')).toContainEqual(['non-finite values', 'input 12, result 8 (NaN or inf)']);
    await expect.poll(() => frame.locator('.mmx-diagnoses li[data-layer="hidden"] .mmx-diagnoses-text').textContent(), { timeout: 30_000 }).toContain(
      'Non-finite values (NaN or inf) in the input, result.',
    );
    await unstick(frame);
    await frame.locator('#mmx-layer').screenshot({ path: join(out, 'keras-nonfinite.png') });
    // Step 1, before the NaN batch: nothing non-finite.
    const p = await cellPoint(frame, 'wherewhen', 0, 1);
    await page.mouse.click(p.x, p.y);
    await expect.poll(() => frame.locator('.mmx-step-value').textContent()).toBe('1 · 2/4');
    const d1 = await route<Diagnosis>(frame, `./diagnosis?run=${q(NONFINITE)}&role=forward&layer=hidden&step=1`);
    expect(d1.step).toBe(1);
    await expect.poll(() => card.locator('.mmx-diagnosis-text').textContent(), { timeout: 30_000 }).toBe(d1.text);
    expect(d1.text).not.toContain('Non-finite');
    expect(await card.locator('[data-kind="non_finite"]').count()).toBe(0);
    await expect.poll(() => frame.locator('.mmx-matrix[data-layer="hidden"] .mmx-sub').textContent()).toContain('step 1');
    expect((await facts(frame, 'hidden')).map(([k]) => k)).not.toContain('non-finite values');
    expect(w.errors).toEqual([]);
    expect(w.failed).toEqual([]);
    await page.close();
  });
});

describe('figures', () => {
  it('time from opening the tab to the first heatmap (demo-like logs)', async () => {
    const clicks: number[] = [];
    const cold: number[] = [];
    const inFrame: number[] = [];
    for (let i = 0; i < 3; i++) {
      // Opening the tab from another TensorBoard dashboard (fresh browser context: nothing cached).
      const { clickMs, inFrameMs, ctx } = await clickToFirstHeatmap(session.browser, demoUrl);
      clicks.push(clickMs);
      inFrame.push(inFrameMs);
      await ctx.close();
      // A cold page load of TensorBoard straight into the tab.
      const ctx2 = await session.browser.newContext({ viewport: { width: 1500, height: 1000 } });
      const page2 = await ctx2.newPage();
      const t1 = Date.now();
      await page2.goto(`${demoUrl}/#${TAB}`);
      const frame2 = await tabFrame(page2);
      await frame2.waitForSelector('body[data-first-heatmap-at]', { timeout: 30_000 });
      cold.push(Number(await frame2.evaluate(() => document.body.dataset.firstHeatmapAt)) - t1);
      await ctx2.close();
    }
    figure('time from clicking the tab to the first heatmap, median of 3', median(clicks), 1000, 'ms', `runs: ${clicks.map((x) => x.toFixed(0)).join(', ')}`);
    info(`info: of which inside the tab's iframe (document start to first heatmap): median ${median(inFrame).toFixed(1)} ms`);
    info(`info: cold TensorBoard page load straight into the tab (URL #matmul_explainer, TensorBoard's own UI loads first) to the first heatmap: median ${median(cold).toFixed(0)} ms (runs: ${cold.map((x) => x.toFixed(0)).join(', ')})`);
    expect(clicks.length).toBe(3);
  });

  it('time to render a 1024-unit x 200-step heatmap', async () => {
    const page = await session.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const frame = await openEntry(page, bigUrl);
    await frame.waitForSelector('[data-heatmap="unitsteps"][data-frame-ms]', { timeout: 60_000 });
    const attrs = () =>
      frame.evaluate(() => {
        const e = document.querySelector<HTMLElement>('[data-heatmap="unitsteps"]')!;
        return { rows: Number(e.dataset.rows), cols: Number(e.dataset.cols), render: Number(e.dataset.renderMs), frame: Number(e.dataset.frameMs ?? NaN) };
      });
    const first = await attrs();
    expect(first.rows).toBe(1024);
    expect(first.cols).toBe(200);
    expect((await samplePixels(frame, 'unitsteps')).colours).toBeGreaterThan(10);
    // Redraw it several times (switching the unit order re-renders it from the cached data).
    const draws: number[] = [first.render];
    const frames: number[] = [first.frame];
    const sorts = ['unit', 'near_zero', 'pair:0', 'near_zero', 'unit', 'near_zero'];
    for (const s of sorts) {
      const count = () => performance.getEntriesByName('mmx:heatmap:unitsteps').length;
      const before = await frame.evaluate(count);
      await frame.locator('select.mmx-sort').selectOption(s);
      await frame.waitForFunction(
        (n) => performance.getEntriesByName('mmx:heatmap:unitsteps').length > n && !!document.querySelector<HTMLElement>('[data-heatmap="unitsteps"]')?.dataset.frameMs,
        before,
      );
      const a = await attrs();
      draws.push(a.render);
      frames.push(a.frame);
    }
    figure('render a 1024-unit x 200-step heatmap (data to pixels, incl. axes and legend), median of 7', median(draws), 100, 'ms', `runs: ${draws.map((x) => x.toFixed(1)).join(', ')}`);
    figure('render a 1024-unit x 200-step heatmap, first (cold) draw', draws[0], 100);
    info(`info: same, until the next animation frame: median ${median(frames).toFixed(1)} ms`);
    const units = await frame.evaluate(() => Number(document.querySelector<HTMLElement>('[data-heatmap="units"]')!.dataset.renderMs));
    info(`info: render the 1024-unit x 9-pair heatmap: ${units.toFixed(1)} ms`);
    await unstick(frame);
    await frame.locator('#mmx-layer').screenshot({ path: join(out, 'units-1024x200.png') });
    await page.close();
  });
});
