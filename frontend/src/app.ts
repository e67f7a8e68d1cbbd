/**
 * The tab: header, control bar and the views, wired to one store. Handles the empty state (no data yet,
 * with how to record it) and the error state (the backend could not be reached or answered an error).
 */
import { type Api, createApi } from './api';
import { createControls } from './controls';
import { el, errorBox } from './dom';
import { onHeatmapRendered } from './heatmap';
import { DataSource } from './load/data';
import { Defaults, runsPatch } from './load/defaults';
import { type State, Store, initialState } from './state';
import { injectStyles } from './styles';
import { AlertsView } from './views/alerts';
import { CompareView } from './views/compare';
import { LayerView } from './views/layer';
import { OverviewView } from './views/overview';
import { WhereWhenView } from './views/wherewhen';
import type { View, ViewContext } from './views/view';
import type { RunInfo } from './types';

export interface AppOptions {
  api?: Api;
}

function code(text: string): HTMLElement {
  return el('code', undefined, text);
}

/** What a user without data sees: how to record some. */
export function emptyState(): HTMLElement {
  const box = el('div', 'mmx-empty');
  box.dataset.state = 'empty';
  box.appendChild(el('h2', undefined, 'No matmul-explainer data.'));
  const p1 = el('p');
  p1.append('Add ', code('tb_matmul_explainer.keras.ExplainerCallback(log_dir)'), ' to ', code('model.fit'), ' callbacks, then reload.');
  const p2 = el('p');
  p2.append(
    'In a custom training loop, use ',
    code('tb_matmul_explainer.keras.LayerRecorder'),
    ' or the summary ops in ',
    code('tb_matmul_explainer.summary'),
    ' (for example ',
    code('summary.dense(name, x, kernel, step=step)'),
    ') under a ',
    code('tf.summary'),
    ' writer, and point ',
    code('tensorboard --logdir'),
    ' at the same directory.',
  );
  box.append(p1, p2);
  return box;
}

export class App {
  readonly root: HTMLElement;
  readonly store = new Store(initialState());
  private api: Api;
  private data: DataSource;
  private defaults: Defaults;
  private main = el('main', 'mmx-main');
  private banner = el('div', 'mmx-banner');
  private views: View[] = [];
  private viewsEl = el('div', 'mmx-views');
  private lastWidth = 0;

  constructor(opts: AppOptions = {}) {
    this.api = opts.api ?? createApi();
    this.data = new DataSource(this.api);
    this.defaults = new Defaults(this.store, this.data);
    injectStyles();
    this.root = el('div', 'mmx-app');
    const header = el('header', 'mmx-header');
    const h1 = el('h1', undefined, 'Matmul explainer');
    const tag = el('span', 'mmx-tagline', 'why are a layer’s outputs or gradients near zero?');
    header.append(h1, tag);
    this.root.append(header, this.banner, this.main);
    const stopFirst = onHeatmapRendered(() => {
      stopFirst();
      // For the browser test and anyone curious: time from this document's start to the first heatmap.
      document.body.dataset.firstHeatmapMs = performance.now().toFixed(1);
      document.body.dataset.firstHeatmapAt = String(Date.now());
      try {
        performance.mark('mmx:first-heatmap');
      } catch {
        /* ignore */
      }
    });
  }

  private ctx(): ViewContext {
    return {
      data: this.data,
      state: () => this.store.get(),
      select: (patch) => this.store.set(patch),
      // Inside a section: its padding and border take 30 px.
      width: () => Math.max(360, (this.main.clientWidth || document.documentElement.clientWidth || 1000) - 40),
    };
  }

  /** First load: runs, then the controls and views (or the empty / error state). */
  async start(): Promise<void> {
    this.main.textContent = '';
    this.banner.textContent = '';
    this.main.appendChild(el('p', 'mmx-muted mmx-loading-text', 'Loading runs…'));
    const runs = await this.fetchRuns();
    this.main.textContent = '';
    if (!runs) {
      const box = errorBox(this.lastError, () => {
        this.api.clear();
        void this.start();
      });
      box.dataset.state = 'error';
      this.main.appendChild(box);
      return;
    }
    if (!runs.length) {
      this.main.appendChild(emptyState());
      return;
    }
    this.applyRuns(runs);
    this.main.appendChild(createControls(this.store, () => void this.reload()));
    const ctx = this.ctx();
    this.views = [new AlertsView(ctx), new OverviewView(ctx), new WhereWhenView(ctx), new LayerView(ctx), new CompareView(ctx)];
    for (const v of this.views) this.viewsEl.appendChild(v.el);
    this.main.appendChild(this.viewsEl);
    this.store.subscribe((s, changed) => this.onChange(s, changed));
    this.watchWidth();
    await this.redrawAll();
  }

  /** The slider's steps, the defaults, then every view from scratch. */
  private async redrawAll(): Promise<void> {
    await this.defaults.refreshSteps();
    if (this.defaults.onChange(this.store.get(), 'all')) return;
    for (const v of this.views) v.update(this.store.get(), 'all');
  }

  /** The reload button: forget cached answers and fetch everything again, keeping the selection. */
  async reload(): Promise<void> {
    if (!this.views.length) return this.start();
    this.api.clear();
    this.banner.textContent = '';
    const runs = await this.fetchRuns();
    if (!runs) {
      const box = errorBox(this.lastError, () => void this.reload());
      box.dataset.state = 'error';
      this.banner.appendChild(box);
      return;
    }
    if (!runs.length) {
      this.banner.appendChild(emptyState());
      return;
    }
    this.applyRuns(runs);
    await this.redrawAll();
  }

  private lastError: unknown = null;

  /** Runs with at least one readable layer (null on error); reports unreadable records in the banner. */
  private async fetchRuns(): Promise<RunInfo[] | null> {
    let runs: RunInfo[];
    try {
      runs = (await this.api.runs()).runs ?? [];
    } catch (e) {
      this.lastError = e;
      return null;
    }
    const unreadable = runs.flatMap((r) => (r.unreadable ?? []).map((u) => ({ run: r.run, ...u })));
    if (unreadable.length) {
      const warn = el('div', 'mmx-warning');
      warn.setAttribute('role', 'status');
      warn.appendChild(el('strong', undefined, `${unreadable.length} record series could not be read. `));
      for (const u of unreadable.slice(0, 5)) warn.appendChild(el('div', undefined, `${u.run} / ${u.tag}: ${u.reason}`));
      this.banner.appendChild(warn);
    }
    return runs.filter((r) => r.layers.length);
  }

  private applyRuns(runs: RunInfo[]): void {
    this.store.set(runsPatch(this.store.get(), runs));
  }

  private onChange(s: State, changed: Set<keyof State>): void {
    if (this.defaults.onChange(s, changed)) return;
    if (changed.size === 1 && changed.has('steps')) return;
    for (const v of this.views) v.update(s, changed);
  }

  private watchWidth(): void {
    if (typeof ResizeObserver === 'undefined') return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    this.lastWidth = this.main.clientWidth;
    new ResizeObserver(() => {
      const w = this.main.clientWidth;
      if (Math.abs(w - this.lastWidth) < 24) return;
      this.lastWidth = w;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        for (const v of this.views) v.update(this.store.get(), 'all');
      }, 150);
    }).observe(this.main);
  }
}
