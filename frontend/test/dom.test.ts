// @vitest-environment jsdom
/**
 * The tab's DOM in jsdom with a fake backend: empty and error states, names rendered as text only,
 * tooltips with the backend's exact values, and the compare view. (Pixels are checked in the browser tests.)
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApi } from '../src/api';
import { App } from '../src/app';
import type { CompareOverviewResponse, RunsResponse } from '../src/types';
import { heatmap, layer, overview, runs, units } from './fixtures';

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

const routes: Record<string, Route> = {
  runs: () => runs,
  overview: (p) => (p.get('run') === EVIL ? evilOverview() : overview()),
  heatmap: (p) => (p.get('run') === EVIL ? { ...heatmap(EVIL), layers: ['<b>evil</b>'], values: [[0.1, 0.2, 0.3]] } : heatmap()),
  units: () => units(),
  unit_heatmap: () => new Response(new Float32Array([0, 0.5, 1, 0.25, 0.5, 0.75, 1, 1, 1, 0, 0, 0]).buffer, { headers: { 'X-Rows': '4', 'X-Steps': '0,100,900', 'X-Group-Size': '1' } }),
  timeline: () => {
    const l = layer('dense', 0);
    return { run: 'mlp', role: 'forward', layer: 'dense', steps: [0, 900], counts: [l.counts, l.counts], sums: [l.sums, l.sums], near_zero_counts: [l.near_zero_counts, l.near_zero_counts], near_zero_sums: [l.near_zero_sums, l.near_zero_sums], cells: [16, 16], near_zero_cells: [2, 2], near_zero_fraction: [0.125, 0.125] };
  },
  compare: (p): CompareOverviewResponse | unknown => {
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
    const l = JSON.parse(ov.dataset.layout!);
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

  it('shows the diagnosis and the ranked alerts when the backend serves them, and nothing on 404', async () => {
    await mount();
    expect(document.querySelector('.mmx-diagnosis')).toBeNull();
    expect(document.querySelector('[data-view="alerts"]')).toBeNull();
    document.body.textContent = '';
    const app = await mount({
      ...routes,
      diagnosis: (p) => ({ text: `Layer ${p.get('layer')}: near-zero inputs.`, causes: { near_zero_first_operand: 0.8 } }),
      alerts: () => ({ alerts: [{ kind: 'dead_units', layer: 'dense', role: 'forward', first_step: 100, severity: 0.5, message: '<i>dense</i>: 50% dead units' }] }),
    });
    expect(document.querySelector('.mmx-diagnosis-text')!.textContent).toBe('Layer dense_1: near-zero inputs.');
    const alert = document.querySelector<HTMLElement>('[data-view="alerts"] li')!;
    expect(alert.textContent).toContain('<i>dense</i>: 50% dead units');
    expect(document.querySelectorAll('i').length).toBe(0);
    alert.click();
    expect(app.store.get().layer).toBe('dense');
  });

  it('clicking a where-and-when cell selects layer and step', async () => {
    const app = await mount();
    const hm = document.querySelector<HTMLElement>('[data-heatmap="wherewhen"]')!;
    const l = JSON.parse(hm.dataset.layout!);
    const overlay = hm.querySelector<HTMLCanvasElement>('.mmx-hm-overlay')!;
    overlay.dispatchEvent(new MouseEvent('click', { clientX: l.cellW * 1.5, clientY: l.cellH * 0.5, bubbles: true }));
    expect(app.store.get().layer).toBe('dense');
    expect(app.store.get().step).toBe(100);
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
