/** Pieces shared by the views: sections, async slots with loading/error states, scales for the measure. */
import type { Api } from '../api';
import { ApiError } from '../api';
import { exact, pct, compact } from '../format';
import { type Grid, maxAbs } from '../grid';
import type { HeatmapGroup } from '../heatmap';
import { DISPLAY_GROUPS, type Measure, type PairStats, type Scope, describePair, measureLabel } from '../pairs';
import { type ColourScale, divergingScale, sequentialScale } from '../scales';
import type { State, Store } from '../state';
import type { TooltipRow } from '../tooltip';

export interface ViewContext {
  api: Api;
  store: Store;
  /** Width available to a view's content. */
  width(): number;
}

export interface View {
  el: HTMLElement;
  update(s: State, changed: Set<keyof State> | 'all'): void;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function section(id: string, title: string, description: string): { root: HTMLElement; head: HTMLElement; body: HTMLElement } {
  const root = el('section', 'mmx-section');
  root.id = `mmx-${id}`;
  root.dataset.view = id;
  const head = el('div', 'mmx-section-head');
  head.appendChild(el('h2', undefined, title));
  const desc = el('p', 'mmx-desc', description);
  const body = el('div', 'mmx-section-body');
  root.append(head, desc, body);
  return { root, head, body };
}

export function errorBox(err: unknown, retry?: () => void): HTMLElement {
  const box = el('div', 'mmx-error');
  box.setAttribute('role', 'alert');
  const status = err instanceof ApiError ? err.status : 0;
  const title = status === 404 ? 'Not found' : status === 400 ? 'Bad request' : 'Could not load data';
  box.appendChild(el('strong', undefined, title));
  box.appendChild(el('span', undefined, ` ${err instanceof Error ? err.message : String(err)}`));
  if (retry) {
    const b = el('button', 'mmx-btn mmx-btn-small', 'Retry');
    b.type = 'button';
    b.addEventListener('click', retry);
    box.appendChild(b);
  }
  return box;
}

/**
 * A region that shows the result of the latest load only (stale answers are dropped), a loading
 * indicator when a load takes a while, and an error box with retry when it fails.
 */
export class Slot {
  readonly el: HTMLElement;
  private token = 0;

  constructor(cls = 'mmx-slot') {
    this.el = el('div', cls);
  }

  async load<T>(load: () => Promise<T>, draw: (v: T) => void): Promise<void> {
    const my = ++this.token;
    const timer = setTimeout(() => {
      if (my === this.token) this.el.classList.add('mmx-loading');
    }, 120);
    try {
      const v = await load();
      if (my !== this.token) return;
      this.el.textContent = '';
      draw(v);
    } catch (e) {
      if (my !== this.token) return;
      this.el.textContent = '';
      this.el.appendChild(errorBox(e, () => void this.load(load, draw)));
      console.error(e);
    } finally {
      clearTimeout(timer);
      if (my === this.token) this.el.classList.remove('mmx-loading');
    }
  }

  clear(message?: string): void {
    this.token++;
    this.el.textContent = '';
    this.el.classList.remove('mmx-loading');
    if (message) this.el.appendChild(el('p', 'mmx-muted', message));
  }
}

export const pctTick = (v: number) => `${Math.round(v * 100)}%`;

/** Colour scale of the chosen measure over the given values (signed sums: symmetric diverging). */
export function measureScale(s: State, values: ArrayLike<number>[], label?: string): ColourScale {
  const name = label ?? `${measureLabel(s.measure)} (${s.scope === 'near_zero' ? 'near-zero results' : 'all results'})`;
  if (s.measure === 'signed_sum') {
    let m = 0;
    for (const v of values) m = Math.max(m, maxAbs(v));
    const sc = divergingScale(m, s.diverging, name);
    sc.tickFormat = compact;
    return sc;
  }
  const sc = sequentialScale([0, 1], s.sequential, name);
  sc.tickFormat = pctTick;
  return sc;
}

export function fractionScale(s: State, label = 'near-zero result fraction'): ColourScale {
  const sc = sequentialScale([0, 1], s.sequential, label);
  sc.tickFormat = pctTick;
  return sc;
}

/** Values of the nine pair columns of a pair grid (excluding the trailing near-zero fraction column). */
export function pairValues(g: Grid): Float64Array {
  const out = new Float64Array(g.rows * (g.cols - 1));
  for (let r = 0; r < g.rows; r++) for (let c = 0; c < g.cols - 1; c++) out[r * (g.cols - 1) + c] = g.values[r * g.cols + c];
  return out;
}

/** Legend text for hatched cells of pair grids: with the near-zero scope a unit without near-zero results has no split. */
export function pairMissingLabel(s: State): string {
  return s.scope === 'near_zero' ? 'no value: no record, or no near-zero results' : 'missing (no record), not zero';
}

export function cellFormat(m: Measure): (v: number) => string {
  return m === 'signed_sum' ? compact : (v) => pct(v, 0);
}

/** Column groups of a pair grid: the four non-Z pairs, the five Z pairs, the near-zero fraction. */
export function pairGroups(measure: ColourScale, fraction: ColourScale, m: Measure): HeatmapGroup[] {
  return [
    ...DISPLAY_GROUPS.map((g) => ({ label: g.label, shortLabel: g.short, count: g.terms.length, scale: measure, cellFormat: cellFormat(m) })),
    { label: 'near-zero results', shortLabel: 'result', count: 1, scale: fraction, cellFormat: (v: number) => pct(v, 0), hideColLabels: true },
  ];
}

/** Tooltip rows with the exact numbers of one pair. */
export function pairRows(p: PairStats, scope: Scope): TooltipRow[] {
  return [
    { label: 'count', value: exact(p.count) },
    { label: 'share of counts', value: p.countShare === null ? '–' : `${exact(p.countShare)} (${pct(p.countShare, 2)})` },
    { label: 'sum', value: exact(p.sum) },
    { label: 'share of |sums|', value: p.absSumShare === null ? '–' : `${exact(p.absSumShare)} (${pct(p.absSumShare, 2)})` },
    { label: 'mean', value: exact(p.mean) },
    { label: 'cells', value: scope === 'near_zero' ? 'near-zero results' : 'all results' },
  ];
}

export function pairSubtitle(term: number, operands: string[]): string {
  return describePair(term, operands);
}

/** Shortest decimal text that reads back as the same float32 (for the f32 unit heatmap). */
export function exactF32(v: number): string {
  if (Number.isNaN(v)) return '–';
  for (let p = 1; p <= 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}

export type { Api };
