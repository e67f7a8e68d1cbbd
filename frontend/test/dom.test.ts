// @vitest-environment jsdom
/**
 * The tab's DOM in jsdom with a fake backend: empty and error states, names rendered as text only,
 * tooltips with the backend's exact values, and the compare view. (Pixels are checked in the browser tests.)
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApi } from '../src/api';
import { App } from '../src/app';
import { worstLayer } from '../src/load/defaults';
import { alertSelection } from '../src/views/alerts';
import type { RunsResponse } from '../src/types';
import { alert, alerts, diagnosis, heatmap, layer, overview, runs, units } from './fixtures';

const EVIL = '<img src=x onerror=alert(1)>';

beforeAll(() => {
  // jsdom has no canvas: a 2D context that accepts every call.
  const ctx = new Proxy(
    {},
    {
      get(_t, prop) {
        if (prop === 'createImageData') return (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) });
        if (prop === 'measureText') return () => ({ width: 10 });
        return () => ({});
      },
      set: () => true,
    },
  );
  (HTMLCanvasElement.prototype as unknown as { getContext: () => unknown }).getContext = () => ctx;
  globalThis.requestAnimationFrame ??= ((cb: FrameRequestCallback) => setTimeout(() => cb(performance.now()), 0)) as unknown as typeof requestAnimationFrame;
});

afterEach(() => {
  document.body.textContent = '';
});

type Route = (params: URLSearchParams) => unknown;

function fakeFetch(routes: Record<string, Route>) {
  return async (url: string) => {
    const u = new URL(url, 'http://tb/data/plugin/matmul_explainer/');
    const name = u.pathname.split('/').pop()!;
    const route = routes[name];
    if (!route) return new Response('Not found', { status: 404 });
    const body = route(u.searchParams);
    if (body instanceof Response) return body;
    return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
}

const evilOverview = () => ({ run: EVIL, role: 'forward', step: 900, layers: [layer('<b>evil</b>', 0)] });

const evilAlerts = () => ({
  ...alerts(EVIL),
  alerts: [alert({ layer: '<b>evil</b>', message: '<i>evil</i>: 2 of 4 units are dead' })],
  diagnoses: [{ layer: '<b>evil</b>', role: 'forward', step: 900, text: '<i>evil</i> diagnosis' }],
});

const routes: Record<string, Route> = {
  runs: () => runs,
  diagnosis: (p) => diagnosis(p.get('layer')!, { run: p.get('run')!, role: p.get('role')! }),
  alerts: (p) => (p.get('run') === EVIL ? evilAlerts() : { ...alerts(p.get('run')!), step: p.has('step') ? Number(p.get('step')) : null }),
  overview: (p) => (p.get('run') === EVIL ? evilOverview() : overview()),
  heatmap: (p) => (p.get('run') === EVIL ? { ...heatmap(EVIL), layers: ['<b>evil</b>'], values: [[0.1, 0.2, 0.3]] } : heatmap()),
  units: () => units(),
  unit_heatmap: () => new Response(new Float32Array([0, 0.5, 1, 0.25, 0.5, 0.75, 1, 1, 1, 0, 0, 0]).buffer, { headers: { 'X-Rows': '4', 'X-Steps': '0,100,900', 'X-Group-Size': '1' } }),
  timeline: () => {
    const l = layer('dense', 0);
    return { run: 'mlp', role: 'forward', layer: 'dense', steps: [0, 900], counts: [l.counts, l.counts], sums: [l.sums, l.sums], near_zero_counts: [l.near_zero_counts, l.near_zero_counts], near_zero_sums: [l.near_zero_sums, l.near_zero_sums], cells: [16, 16], near_zero_cells: [2, 2], near_zero_fraction: [0.125, 0.125] };
  },
  compare: (p): unknown => {
    const rs = p.getAll('run');
    if (p.get('view') === 'heatmap') {
      return {
        view: 'heatmap', role: 'forward', runs: rs, layers: ['dense', 'dense_1', '<b>evil</b>'],
        results: rs.map((r) => (r === EVIL
          ? { run: r, role: 'forward', layers: ['<b>evil</b>'], steps: [0, 100, 900], values: [null, null, [0.1, 0.2, 0.3]] }
          : { run: r, role: 'forward', layers: ['dense', 'dense_1'], steps: [0, 100, 900], values: [[0.1, 0.2, 0.125], [null, 0.4, 0.5], null] })),
      };
    }
    return {
      view: 'overview', role: 'forward', runs: rs, layers: ['dense', 'dense_1', '<b>evil</b>'],
      results: rs.map((r) => (r === EVIL
        ? { run: r, role: 'forward', step: 900, layers: [null, null, layer('<b>evil</b>', 0)] }
        : { ...overview(), layers: [layer('dense', 0), layer('dense_1', 1), null] })),
    };
  },
};

async function mount(r: Record<string, Route> = routes): Promise<App> {
  const app = new App({ api: createApi(fakeFetch(r)) });
  document.body.appendChild(app.root);
  await app.start();
  await settle();
  return app;
}

/** The geometry a heatmap card reports in its data-layout attribute (heatmap/telemetry.ts). */
function layoutOf(card: HTMLElement): { groupX: number[]; cellW: number; cellH: number } {
  return JSON.parse(card.dataset.layout!) as { groupX: number[]; cellW: number; cellH: number };
}

async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((res) => setTimeout(res, 0));
}

describe('tab DOM', () => {
  it('empty state says how to record data', async () => {
    await mount({ runs: (): RunsResponse => ({ version: 1, runs: [] }) });
    const empty = document.querySelector('[data-state="empty"]')!;
    expect(empty.textContent).toContain('No matmul-explainer data.');
    expect(empty.textContent).toContain('tb_matmul_explainer.keras.ExplainerCallback(log_dir)');
  });

  it('error state is visible and names the problem', async () => {
    await mount({ runs: () => new Response('data provider failed', { status: 500 }) });
    const err = document.querySelector('[data-state="error"]')!;
    expect(err.getAttribute('role')).toBe('alert');
    expect(err.textContent).toContain('data provider failed');
    expect(err.querySelector('button')!.textContent).toBe('Retry');
  });

  it('renders run and layer names as text, never as HTML', async () => {
    const app = await mount();
    expect(document.querySelectorAll('img').length).toBe(0);
    const names = [...document.querySelectorAll('.mmx-run-name')].map((e) => e.textContent);
    expect(names).toContain(EVIL);
    app.store.set({ selected: [EVIL] });
    await settle();
    expect(document.querySelectorAll('img, b').length).toBe(0);
    const labels = [...document.querySelectorAll('.mmx-axis-rows text')].map((e) => e.textContent);
    expect(labels).toContain('<b>evil</b>');
    const options = [...document.querySelectorAll<HTMLOptionElement>('.mmx-layer-select option')].map((o) => o.textContent);
    expect(options).toEqual(['<b>evil</b>']);
  });

  it('draws the overview, where-and-when and layer views', async () => {
    await mount();
    const ids = [...document.querySelectorAll<HTMLElement>('[data-heatmap]')].map((e) => e.dataset.heatmap);
    expect(ids).toEqual(expect.arrayContaining(['overview', 'wherewhen', 'units', 'unitsteps', 'timeline']));
    const ov = document.querySelector<HTMLElement>('[data-heatmap="overview"]')!;
    expect(ov.dataset.rows).toBe('2');
    expect(ov.dataset.cols).toBe('10');
    // The layer with the largest near-zero fraction is selected by default.
    expect(document.querySelector<HTMLSelectElement>('.mmx-layer-select')!.value).toBe('dense_1');
    expect(document.querySelector('.mmx-matrix td[data-term="ZZ"]')!.textContent).toContain('count 5');
    expect(document.body.dataset.firstHeatmapMs).toBeDefined();
  });

  it('a hovered cell shows the exact values from the backend', async () => {
    await mount();
    const ov = document.querySelector<HTMLElement>('[data-heatmap="overview"]')!;
    const l = layoutOf(ov);
    const overlay = ov.querySelector<HTMLCanvasElement>('.mmx-hm-overlay')!;
    // Row 0 (dense), first column (PP); jsdom's bounding rect is at 0,0.
    overlay.dispatchEvent(new MouseEvent('mousemove', { clientX: l.groupX[0] + l.cellW / 2, clientY: l.cellH / 2, bubbles: true }));
    const tip = document.querySelector<HTMLElement>('.mmx-tooltip')!;
    expect(tip.hidden).toBe(false);
    expect(tip.querySelector('.mmx-tooltip-title')!.textContent).toBe('dense · PP');
    // Default scope: near-zero results; PP near-zero count 4 and sum 0.5.
    expect(tip.querySelector('td[data-label="count"]')!.textContent).toBe('4');
    expect(tip.querySelector('td[data-label="sum"]')!.textContent).toBe('0.5');
    expect(tip.querySelector('td[data-label="mean"]')!.textContent).toBe('0.125');
  });

  it('layer detail shows the diagnosis text, its causes with shares, dead rows and the layer\'s alerts', async () => {
    await mount();
    const card = document.querySelector<HTMLElement>('.mmx-diagnosis')!;
    expect(card.dataset.layer).toBe('dense_1');
    expect(card.querySelector('.mmx-diagnosis-text')!.textContent).toBe(diagnosis('dense_1').text);
    const causes = [...card.querySelectorAll('.mmx-cause')].map((li) => [li.querySelector('.mmx-cause-name')!.textContent, li.querySelector('.mmx-cause-share')!.textContent]);
    expect(causes).toEqual([
      ['near-zero input', '80%'],
      ['input +/- cancelling', '10%'],
    ]);
    expect(card.querySelector('.mmx-dead-rows')!.textContent).toContain('1, 3');
    const layerAlerts = [...card.querySelectorAll('.mmx-layer-alerts li')].map((li) => li.textContent);
    expect(layerAlerts).toEqual([alert().message]);
  });

  it('layer detail says so where the layer has no record at the step (404), and shows other errors', async () => {
    await mount({ ...routes, diagnosis: () => new Response('Not found: no record at or before step 0', { status: 404 }) });
    const card = document.querySelector<HTMLElement>('.mmx-diagnosis')!;
    expect(card.classList.contains('mmx-diagnosis-none')).toBe(true);
    expect(card.textContent).toContain('has no forward (outputs) record');
    expect(document.querySelector('.mmx-diagnosis-slot .mmx-error')).toBeNull();
    document.body.textContent = '';
    await mount({ ...routes, diagnosis: () => ({ text: 'an old shape' }) });
    expect(document.querySelector('.mmx-diagnosis-slot .mmx-error')!.textContent).toContain('malformed /diagnosis answer');
  });

  it('alerts panel lists the ranked alerts in order; a click selects layer, role and first step', async () => {
    const app = await mount();
    const items = [...document.querySelectorAll<HTMLElement>('[data-view="alerts"] li')];
    const expected = alerts().alerts;
    expect(items.map((li) => li.querySelector('.mmx-alert-text')!.textContent)).toEqual(expected.map((a) => a.message));
    expect(items.map((li) => li.querySelector('.mmx-alert-layer')!.textContent)).toEqual(['dense_1', 'dense']);
    expect(items[0].querySelector('.mmx-alert-role')!.textContent).toBe('forward (outputs)');
    expect(items[0].querySelector('.mmx-alert-step')!.textContent).toBe('since step 100');
    expect(items[0].querySelector('.mmx-alert-sev')!.textContent).toBe('45%');
    items[1].click();
    await settle();
    expect(app.store.get()).toMatchObject({ layer: 'dense', role: 'forward', step: 0 });
    expect(document.querySelector<HTMLSelectElement>('.mmx-layer-select')!.value).toBe('dense');
    expect(document.querySelector<HTMLElement>('.mmx-diagnosis')!.dataset.layer).toBe('dense');
    // Enter on a focused alert selects it too.
    document.querySelector<HTMLElement>('[data-view="alerts"] li')!.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter' }));
    expect(app.store.get()).toMatchObject({ layer: 'dense_1', step: 100 });
    // An alert that began at the latest step follows the latest step (null); another role's is left to that role's steps.
    expect(alertSelection(app.store.get(), alert({ first_step: 900 }))).toEqual({ layer: 'dense_1', role: 'forward', step: null });
    expect(alertSelection(app.store.get(), alert({ role: 'kernel_gradient', first_step: 900 }))).toEqual({ layer: 'dense_1', role: 'kernel_gradient', step: 900 });
  });

  it('alerts panel: every alert fills one grid row, with or without the layer it was seen in', async () => {
    const seen = alert({ layer: 'conv2_block1_1_relu', role: 'input_features', seen_in: 'conv2_block1_2_conv' });
    await mount({ ...routes, alerts: (p) => ({ ...alerts(p.get('run')!), alerts: [seen, ...alerts().alerts] }) });
    const items = [...document.querySelectorAll<HTMLElement>('[data-view="alerts"] li')];
    const columns = getComputedStyle(document.querySelector('.mmx-alert-list')!).gridTemplateColumns.split(/ (?![^(]*\))/);
    expect(columns).toHaveLength(7);
    expect(items.map((li) => li.children.length)).toEqual([7, 7, 7]);
    expect(items.map((li) => li.querySelector('.mmx-alert-seen')!.textContent)).toEqual(['seen in conv2_block1_2_conv', '', '']);
    expect(items.map((li) => li.lastElementChild!.className)).toEqual(['mmx-alert-text', 'mmx-alert-text', 'mmx-alert-text']);
  });

  it('alerts panel: none is said so, and an error is shown, not hidden', async () => {
    await mount({ ...routes, alerts: (p) => ({ ...alerts(p.get('run')!), alerts: [] }) });
    expect(document.querySelector('[data-view="alerts"] h2')!.textContent).toBe('No alerts for mlp: nothing looks wrong.');
    document.body.textContent = '';
    await mount({ ...routes, alerts: () => new Response('boom', { status: 500 }) });
    expect(document.querySelector('.mmx-alerts-slot .mmx-error')!.textContent).toContain('boom');
    // The overview still draws without its diagnosis lines.
    expect(document.querySelector('[data-heatmap="overview"]')).not.toBeNull();
    expect(document.querySelector('.mmx-diagnoses')).toBeNull();
  });

  it('overview lists each layer\'s diagnosis line of the role, and its tooltips carry it', async () => {
    const app = await mount();
    const lines = [...document.querySelectorAll<HTMLElement>('.mmx-diagnoses li')];
    expect(lines.map((li) => [li.dataset.layer, li.querySelector('.mmx-diagnoses-text')!.textContent])).toEqual([
      ['dense', 'Nothing wrong: 12% of results are near zero.'],
      ['dense_1', '50% of results are near zero.'],
    ]);
    lines[0].click();
    expect(app.store.get().layer).toBe('dense');
    await settle();
    const ov = document.querySelector<HTMLElement>('[data-heatmap="overview"]')!;
    const l = layoutOf(ov);
    ov.querySelector('.mmx-hm-overlay')!.dispatchEvent(new MouseEvent('mousemove', { clientX: l.groupX[0] + l.cellW / 2, clientY: l.cellH / 2, bubbles: true }));
    expect(document.querySelector('.mmx-tooltip td[data-label="diagnosis"]')!.textContent).toBe('Nothing wrong: 12% of results are near zero.');
  });

  it('alerts, diagnoses and their messages are text, never HTML', async () => {
    const app = await mount();
    app.store.set({ selected: [EVIL] });
    await settle();
    expect(document.querySelector('[data-view="alerts"] .mmx-alert-layer')!.textContent).toBe('<b>evil</b>');
    expect(document.querySelector('[data-view="alerts"] .mmx-alert-text')!.textContent).toBe('<i>evil</i>: 2 of 4 units are dead');
    expect(document.querySelector('.mmx-diagnoses-text')!.textContent).toBe('<i>evil</i> diagnosis');
    expect(document.querySelectorAll('img, b, i').length).toBe(0);
  });

  it('clicking a where-and-when cell selects layer and step', async () => {
    const app = await mount();
    const hm = document.querySelector<HTMLElement>('[data-heatmap="wherewhen"]')!;
    const l = layoutOf(hm);
    const overlay = hm.querySelector<HTMLCanvasElement>('.mmx-hm-overlay')!;
    overlay.dispatchEvent(new MouseEvent('click', { clientX: l.cellW * 1.5, clientY: l.cellH * 0.5, bubbles: true }));
    expect(app.store.get().layer).toBe('dense');
    expect(app.store.get().step).toBe(100);
  });

  it('a new selection moves the outline of heatmaps whose data did not change, without rebuilding them', async () => {
    const app = await mount();
    const card = (id: string) => document.querySelector<HTMLElement>(`[data-heatmap="${id}"]`)!;
    const before = { wherewhen: card('wherewhen'), timeline: card('timeline'), overview: card('overview') };
    const l = layoutOf(before.wherewhen);
    const overlay = before.wherewhen.querySelector<HTMLCanvasElement>('.mmx-hm-overlay')!;
    overlay.dispatchEvent(new MouseEvent('click', { clientX: l.cellW * 1.5, clientY: l.cellH * 1.5, bubbles: true }));
    await settle();
    expect(app.store.get().step).toBe(100);
    // Same data (layers x steps; the layer's pairs over steps): the same cards, only their overlay redrawn.
    expect(card('wherewhen')).toBe(before.wherewhen);
    expect(card('timeline')).toBe(before.timeline);
    expect(card('wherewhen').querySelector('.mmx-axis-rows .tick.mmx-emph title')!.textContent).toBe(app.store.get().layer);
    // The overview shows the data at the step: rebuilt.
    expect(card('overview')).not.toBe(before.overview);
  });

  it('the layer detail opens on the layer with the largest near-zero fraction, chosen by the loader layer', async () => {
    const app = await mount();
    expect(app.store.get().layer).toBe(worstLayer(overview()));
    expect(document.querySelector<HTMLSelectElement>('.mmx-layer-select')!.value).toBe(app.store.get().layer);
  });

  it('layers that were not recorded are listed per run as text; a backend without the field shows nothing', async () => {
    const withNotes: RunsResponse = {
      ...runs,
      runs: [
        {
          ...runs.runs[0],
          notRecorded: [{ layer: 'dilated', reason: 'dilation_rate=(2,) is not supported (dilation 1 only)' }, { layer: '<b>x</b>', reason: '<img src=x onerror=alert(1)> overrides call()' }],
          partlyRecorded: [{ layer: 'gen', reason: 'no gradient reached its output in the recording step' }],
        },
        runs.runs[1],
      ],
    };
    const app = await mount({ ...routes, runs: () => withNotes });
    const items = [...document.querySelectorAll<HTMLElement>('.mmx-not-recorded li')];
    expect(items.map((li) => li.textContent)).toEqual([
      'Not recorded: dilated — dilation_rate=(2,) is not supported (dilation 1 only)',
      'Not recorded: <b>x</b> — <img src=x onerror=alert(1)> overrides call()',
      'Recorded in part: gen — no gradient reached its output in the recording step',
    ]);
    expect(items.map((li) => li.dataset.layer)).toEqual(['dilated', '<b>x</b>', 'gen']);
    expect(document.querySelector('.mmx-not-recorded')!.getAttribute('role')).toBe('note');
    expect(document.querySelectorAll('img, b').length).toBe(0);
    const [badge, partly] = [...document.querySelectorAll<HTMLElement>('.mmx-run .mmx-badge-note')];
    expect(partly.textContent).toBe('1 recorded in part');
    expect(partly.title).toBe('gen: no gradient reached its output in the recording step');
    expect(badge.textContent).toBe('2 not recorded');
    expect(badge.title).toBe('dilated: dilation_rate=(2,) is not supported (dilation 1 only)\n<b>x</b>: <img src=x onerror=alert(1)> overrides call()');
    // The other run has no `notRecorded` field (an older backend): no notice, no badge, no error.
    app.store.set({ selected: [EVIL] });
    await settle();
    expect(document.querySelector('.mmx-not-recorded')).toBeNull();
    expect(document.querySelectorAll('.mmx-badge-note').length).toBe(2);
    expect(document.querySelector('.mmx-error')).toBeNull();
    // The default fixture has no `notRecorded` anywhere.
    document.body.textContent = '';
    await mount();
    expect(document.querySelector('.mmx-not-recorded, .mmx-badge-note')).toBeNull();
  });

  it('non-finite values: the matrix names them, the timeline lists their steps and a click selects one', async () => {
    const l = layer('dense', 0);
    const bad = [...l.sums];
    bad[0] = null;
    const nonFinite = layer('dense_1', 1, { near_zero_fraction: 0.5, near_zero_cells: 8, nonfinite: [2, 0, 7], sums: bad });
    const app = await mount({
      ...routes,
      overview: () => ({ ...overview(), layers: [layer('dense', 0), nonFinite] }),
      timeline: () => ({
        run: 'mlp', role: 'forward', layer: 'dense_1', steps: [0, 100, 900], counts: [l.counts, l.counts, l.counts], sums: [l.sums, bad, bad],
        near_zero_counts: [l.near_zero_counts, l.near_zero_counts, l.near_zero_counts], near_zero_sums: [l.near_zero_sums, l.near_zero_sums, l.near_zero_sums],
        cells: [16, 16, 16], near_zero_cells: [2, 2, 2], near_zero_fraction: [0.125, 0.125, 0.125],
      }),
    });
    const matrix = document.querySelector<HTMLElement>('.mmx-matrix')!;
    expect(matrix.dataset.layer).toBe('dense_1');
    expect(matrix.classList.contains('mmx-has-nonfinite')).toBe(true);
    const facts = [...matrix.querySelectorAll('dt')].map((dt) => [dt.textContent, dt.nextElementSibling!.textContent]);
    expect(facts).toContainEqual(['non-finite values', 'input 2, result 7 (NaN or inf)']);
    const note = document.querySelector<HTMLElement>('.mmx-nonfinite-steps')!;
    expect(note.dataset.steps).toBe('100,900');
    expect(note.textContent).toContain('Non-finite values (NaN or inf) in dense_1’s products at 2 of 3 recorded steps');
    const buttons = [...note.querySelectorAll<HTMLButtonElement>('button')];
    expect(buttons.map((b) => b.textContent)).toEqual(['100', '900']);
    buttons[0].click();
    expect(app.store.get().step).toBe(100);
    buttons[1].click();
    expect(app.store.get().step).toBeNull(); // the latest step: follow the latest
    // A layer without non-finite values has neither.
    app.store.set({ layer: 'dense' });
    await settle();
    expect(document.querySelector('.mmx-matrix')!.classList.contains('mmx-has-nonfinite')).toBe(false);
  });

  it('compare view shows both runs, aligned by name, missing layers labelled', async () => {
    const app = await mount();
    app.store.set({ selected: ['mlp', EVIL] });
    await settle();
    const panels = [...document.querySelectorAll<HTMLElement>('[data-heatmap^="compare-overview-"]')];
    expect(panels.map((p) => p.dataset.run)).toEqual(['mlp', EVIL]);
    expect(panels.map((p) => p.querySelector('h3')!.textContent)).toEqual(['mlp', EVIL]);
    expect(document.querySelector('[data-heatmap="compare-diff"]')).not.toBeNull();
    expect(document.querySelector('[data-heatmap="compare-fractions"] .mmx-legend-missing')).not.toBeNull();
    expect(document.querySelectorAll('img, b').length).toBe(0);
  });
});

describe('overview of many layers', () => {
  // 80 layers: block_0/dense … block_9/dense_7 (ten groups of eight); block_3/dense_2 has an alert.
  const names = Array.from({ length: 80 }, (_, i) => `block_${Math.floor(i / 8)}/dense${i % 8 ? `_${i % 8}` : ''}`);
  const manyRoutes: Record<string, Route> = {
    ...routes,
    overview: () => ({ ...overview(), layers: names.map((n, i) => layer(n, i, { near_zero_fraction: n === 'block_7/dense_1' ? 0.9 : 0.1 })) }),
    alerts: (p) => ({
      ...alerts(p.get('run')!),
      alerts: [alert({ layer: 'block_3/dense_2' })],
      diagnoses: names.map((n) => ({ layer: n, role: 'forward', step: 900, text: n === 'block_3/dense_2' ? 'Dead units.' : 'Nothing wrong: 10% of results are near zero.' })),
    }),
  };
  const labels = () => [...document.querySelectorAll('[data-heatmap="overview"] .mmx-axis-rows .tick')].map((t) => t.querySelector('text')!.textContent);
  const key = (k: string) => document.querySelector('[data-heatmap="overview"] canvas.mmx-hm-overlay')!.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true }));

  it('starts with the groups of the alerted and selected layers open, the alerted layer marked', async () => {
    await mount(manyRoutes);
    const shown = labels();
    expect(shown.filter((l) => l.startsWith('▸')).length).toBe(8);
    expect(shown).toContain('▾ block_3/* (8 layers) ⚠1');
    expect(shown).toContain('⚠ block_3/dense_2');
    expect(shown).toContain('block_7/dense_1'); // the default layer's group is open too
    expect(document.querySelector('.mmx-diagnoses-fold > summary')!.textContent).toBe('79 layers: nothing wrong');
    expect([...document.querySelectorAll('.mmx-diagnoses > ul > li')].map((li) => (li as HTMLElement).dataset.layer)).toEqual(['block_3/dense_2']);
  });

  it('↓ and ↑ move the selected layer, Enter on a group opens it, the filter leaves the matching layers', async () => {
    const app = await mount(manyRoutes);
    expect(app.store.get().layer).toBe('block_7/dense_1');
    key('ArrowDown');
    expect(app.store.get().layer).toBe('block_7/dense_2');
    key('ArrowUp');
    key('ArrowUp');
    expect(app.store.get().layer).toBe('block_7/dense');
    key('ArrowUp'); // the group row block_7/*: outlined, the layer stays
    key('ArrowUp'); // block_6/* (closed)
    key('Enter');
    expect(labels()).toContain('▾ block_6/* (8 layers)');
    key('ArrowDown');
    expect(app.store.get().layer).toBe('block_6/dense');
    const filter = document.querySelector<HTMLInputElement>('input.mmx-filter')!;
    filter.value = 'dense_7$';
    filter.dispatchEvent(new Event('input'));
    expect(labels().filter((l) => !l.startsWith('▾'))).toEqual(names.filter((n) => n.endsWith('dense_7')));
    expect(document.querySelector('.mmx-overview-count')!.textContent).toBe('10 of 80 layers match');
  });
});
