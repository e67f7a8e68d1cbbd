/**
 * Model overview: layers (model order) x the nine pairs, near-zero pairs grouped, near-zero fraction beside. A model
 * of many layers is shown in groups by name prefix (layergroups.ts: a closed group is one row of its pooled totals),
 * with a filter on layer names, the layers with alerts marked, and keyboard moves between layers. Below it the
 * layers that were not recorded, with why (from /runs), and the diagnosis lines (diagnoses.ts, from /alerts at the
 * same step), also in the cells' tooltips.
 */
import { el, section } from '../dom';
import { exact, nonFiniteText, pct } from '../format';
import type { Grid } from '../grid';
import { type HeatmapHandle, createHeatmap } from '../heatmap';
import { MAX_GROUP, type LayerGroup, type OverviewRow, defaultOpen, groupLayers, overviewRows, pooledTotals } from '../layergroups';
import { clamp } from '../layout';
import { describePair, pairStats, scoped } from '../pairs';
import { notRecordedOf, operandsOf, roleLabel, runInfo, type State } from '../state';
import { INACTIVE_COLUMN, overviewGrid, termOfColumn, withInactiveColumn } from '../transforms';
import type { TooltipRow } from '../tooltip';
import type { AlertsResponse, LayerDiagnosis, LayerTotals, NotRecorded, OverviewResponse } from '../types';
import { TERMS } from '../types';
import { diagnosisList } from './diagnoses';
import { fractionScale, measureScale, pairGroups, pairMissingLabel, pairValues } from './measure';
import { pairRows } from './pairtext';
import { Slot } from './slot';
import type { View, ViewContext } from './view';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'measure', 'scope', 'step', 'layer', 'sequential', 'diverging', 'runs'];

export class OverviewView implements View {
  readonly el: HTMLElement;
  private slot = new Slot();
  private bar = overviewBar();
  private notRecorded = el('div', 'mmx-not-recorded-slot');
  private list = new Slot('mmx-slot mmx-diagnoses-slot');
  /** Diagnosis lines by layer name and the layers with an alert, for the run, role and step in `linesKey`. */
  private lines = new Map<string, LayerDiagnosis>();
  private alerted = new Set<string>();
  private linesKey = '';
  /** The drawn model's groups, which are open, and whether the user chose that (else they follow the defaults). */
  private groups: { key: string; all: LayerGroup[]; open: Set<string>; chosen: boolean } | null = null;
  /** The heatmap on screen, its response and rows, while no load is pending. */
  private drawn: { hm: HeatmapHandle; ov: OverviewResponse; rows: OverviewRow[] } | null = null;
  /** The response drawn last (the filter and the groups redraw it), while no load is pending. */
  private last: { s: State; ov: OverviewResponse; key: string } | null = null;
  /** The row the keyboard is on. */
  private cursor: number | null = null;

  constructor(private ctx: ViewContext) {
    const s = section(
      'overview',
      'Model overview',
      'Where each layer’s products come from, by operand-class pair (first letter = first operand; P positive, Z near zero, N negative). ' +
        'Pairs with a near-zero operand are grouped on the right; then the share of the layer’s results that are near zero and, for layers with an activation of their own, the share of cells where it is inactive. ' +
        'Click a row to open the layer, a group (▸) to open or close it; ↑/↓ move between layers, Enter opens one. ⚠ marks a layer with an alert.',
    );
    this.el = s.root;
    s.body.append(this.bar.root, this.slot.el, this.notRecorded, this.list.el);
    this.bar.filter.addEventListener('input', () => this.redraw());
    this.bar.expand.addEventListener('click', () => this.setOpen((g) => g.map((x) => x.key)));
    this.bar.collapse.addEventListener('click', () => this.setOpen(() => []));
    this.slot.el.addEventListener('keydown', (e) => this.onKey(e));
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !RELEVANT.some((k) => changed.has(k))) return;
    if (this.drawn && changed !== 'all' && changed.size === 1 && changed.has('layer')) return this.moveSelection(s.layer);
    this.drawn = null;
    this.last = null;
    const run = s.selected[0];
    this.notRecorded.textContent = '';
    if (!run) {
      this.slot.clear();
      this.list.clear();
      return;
    }
    const info = runInfo(s, run);
    const skipped = notRecordedNotice(notRecordedOf(info), notRecordedOf(info, 'partlyRecorded'));
    if (skipped) this.notRecorded.appendChild(skipped);
    const data = this.ctx.data;
    const key = JSON.stringify([run, s.role, s.step]);
    void this.slot.load(
      () => data.overview(s),
      (ov) => this.draw(s, ov, key),
    );
    // Each layer's diagnosis line comes from /alerts at the same step, drawn when it arrives (the heatmap does
    // not wait for it; it is redrawn with the alerts marked); without it the overview is complete all the same.
    void this.list.load(
      () => data.diagnosisLines(s),
      (al) => {
        this.lines = diagnosisLines(al, s.role);
        this.alerted = new Set((al?.alerts ?? []).filter((a) => a.role === s.role).map((a) => a.layer));
        this.linesKey = key;
        const open = (layer: string) => this.ctx.select({ layer });
        if (this.lines.size) this.list.el.appendChild(diagnosisList(`Diagnosis per layer (${roleLabel(s.role)})`, this.lines, this.alerted, this.ctx.state().layer, open));
        if (this.alerted.size && this.last?.key === key) this.draw(this.last.s, this.last.ov, key);
      },
    );
  }

  /** Groups the response's layers (kept while the model is the same) and draws it. */
  private draw(s: State, ov: OverviewResponse, key: string): void {
    if (!ov.layers.length) {
      this.slot.clear(`Run has no layers recorded for the role “${roleLabel(s.role)}”.`);
      return;
    }
    const names = ov.layers.map((l) => l.name);
    const model = JSON.stringify([ov.run, ov.role, names]);
    if (this.groups?.key !== model) this.groups = { key: model, all: groupLayers(names), open: new Set(), chosen: false };
    if (!this.groups.chosen) {
      const keep = new Set(this.linesKey === key ? this.alerted : []);
      if (s.layer) keep.add(s.layer);
      this.groups.open = defaultOpen(this.groups.all, names, keep);
    }
    this.last = { s, ov, key };
    this.render(s, ov, key);
  }

  /** Draws the rows the groups and the filter leave, on the slot (no fetch). */
  private render(s: State, ov: OverviewResponse, key: string): void {
    const refocus = this.slot.el.contains(document.activeElement);
    this.slot.el.textContent = '';
    const g = this.groups!;
    const names = ov.layers.map((l) => l.name);
    const rows = overviewRows(g.all, names, g.open, this.bar.filter.value);
    const alerted = this.linesKey === key ? this.alerted : new Set<string>();
    this.bar.count.textContent = countText(rows, names.length, g.all, this.bar.filter.value);
    this.bar.root.hidden = names.length <= MAX_GROUP;
    if (!rows.length) {
      this.drawn = null;
      this.slot.el.appendChild(el('p', 'mmx-muted', `No layer name matches “${this.bar.filter.value}”.`));
      return;
    }
    const totals = rows.map((r) => (r.kind === 'layer' ? ov.layers[r.index] : pooledTotals(r.group.label, r.group.members.map((i) => ov.layers[i]))));
    const labels = rows.map((r, i) => (r.kind === 'layer' ? totals[i].name : `${r.group.label} (${r.group.members.length} layers)`));
    const line = (layer: string) => (this.linesKey === key ? this.lines.get(layer) : undefined);
    const grid = withInactiveColumn(overviewGrid(totals, labels, s.measure, s.scope), totals);
    const hm = this.heatmap(s, ov, rows, grid, (r) => rowDisplay(rows[r], labels[r], ov, alerted), (r) => totals[r], line);
    this.slot.el.appendChild(hm.root);
    this.drawn = { hm, ov, rows };
    if (refocus) hm.root.querySelector<HTMLElement>('canvas.mmx-hm-overlay')?.focus({ preventScroll: true });
  }

  private heatmap(
    s: State,
    ov: OverviewResponse,
    rows: OverviewRow[],
    grid: Grid,
    display: (r: number) => { text: string; cls?: string },
    totalsOf: (r: number) => LayerTotals,
    line: (layer: string) => LayerDiagnosis | undefined,
  ): HeatmapHandle {
    // A last column of each layer's inactive share, where some layer has an activation of its own.
    const inactiveCol = grid.colLabels[grid.cols - 1] === INACTIVE_COLUMN ? grid.cols - 1 : -1;
    const mScale = measureScale(s, [pairValues(grid)]);
    const fScale = fractionScale(s);
    const selRow = rowOfLayer(rows, ov, this.ctx.state().layer); // the layer now: a redraw may come after a selection
    this.cursor = selRow;
    return createHeatmap({
      id: 'overview',
      title: `${ov.run} · ${roleLabel(ov.role)} · step ${ov.step}`,
      subtitle: `${ov.layers.length} layers`,
      grid,
      scale: mScale,
      groups: [
        ...pairGroups(mScale, fScale, s.measure),
        ...(inactiveCol < 0 ? [] : [{ label: 'inactive (activation)', shortLabel: 'inactive', count: 1, scale: fractionScale(s, 'inactive share'), cellFormat: (v: number) => pct(v, 0), hideColLabels: true }]),
      ],
      missingLabel: pairMissingLabel(s),
      rowTitle: 'layer',
      colTitle: 'pair',
      width: this.ctx.width(),
      // Every row labelled (16 px and up), the page's width used: the plot grows with the rows.
      maxPlotHeight: Math.max(560, rows.length * 16),
      maxCellW: 100,
      minCellW: 26,
      maxCellH: 24,
      minCellH: 16,
      rowLabelMax: 44,
      rowDisplay: display,
      selected: { row: selRow, col: null },
      emphasisRow: selRow,
      fileBase: [ov.run, ov.role, `step${ov.step}`],
      onCellClick: (r) => this.openRow(r),
      tooltip: (r, c) => {
        const row = rows[r];
        const layer = totalsOf(r);
        const pooled = row.kind === 'group' ? ` (pooled over ${row.group.members.length} layers)` : '';
        const diag = row.kind === 'layer' ? diagnosisRow(line(layer.name)) : [];
        const term = termOfColumn(c);
        const operands = operandsOf(s, ov.run, row.kind === 'layer' ? layer.name : null, ov.role);
        if (c === inactiveCol) {
          const f = layer.inactive_fraction ?? null;
          return {
            title: `${layer.name} · inactive share${pooled}`,
            subtitle: `step ${layer.step}`,
            rows: [{ label: 'activation inactive', value: f === null ? 'no activation of its own' : `${exact(f)} (${pct(f, 2)} of cells)` }, ...diag],
          };
        }
        if (term < 0) {
          return {
            title: `${layer.name} · near-zero results${pooled}`,
            subtitle: `${layer.op}, ${layer.units} units, step ${layer.step}`,
            rows: [
              { label: 'near-zero fraction', value: `${exact(layer.near_zero_fraction)} (${pct(layer.near_zero_fraction, 2)})` },
              { label: 'near-zero cells', value: `${exact(layer.near_zero_cells)} of ${exact(layer.cells)}` },
              { label: 'dead units', value: exact(layer.dead_units) },
              ...(layer.thresholds.length ? [{ label: 'thresholds', value: layer.thresholds.map((t) => exact(t)).join(' / ') }] : []),
              ...nonFiniteRow(layer.nonfinite, operands),
              ...diag,
            ],
          };
        }
        const { counts, sums } = scoped(layer, s.scope);
        return {
          title: `${layer.name} · ${TERMS[term]}${pooled}`,
          subtitle: `${describePair(term, operands)} · step ${layer.step}`,
          rows: [...pairRows(pairStats(counts, sums, term), s.scope), ...diag],
        };
      },
    });
  }

  private redraw(): void {
    if (this.last) this.render(this.last.s, this.last.ov, this.last.key);
  }

  /** Opens the layer of row `r`, or opens/closes the group of row `r`. */
  private openRow(r: number): void {
    const row = this.drawn?.rows[r];
    if (!row) return;
    if (row.kind === 'layer') return this.ctx.select({ layer: this.drawn!.ov.layers[row.index].name });
    this.setOpen((_all, open) => (open.has(row.group.key) ? [...open].filter((k) => k !== row.group.key) : [...open, row.group.key]));
    this.cursor = r;
  }

  /** The user's choice of open groups: `pick(all groups, open keys)` gives the keys to open. */
  private setOpen(pick: (all: LayerGroup[], open: Set<string>) => string[]): void {
    if (!this.groups) return;
    this.groups.open = new Set(pick(this.groups.all, this.groups.open));
    this.groups.chosen = true;
    this.redraw();
  }

  /** ↑/↓ move the selected layer (a group row is only outlined), Enter opens it (a group: opens or closes it), ←/→ close/open. */
  private onKey(e: KeyboardEvent): void {
    const d = this.drawn;
    if (!d || !['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Enter'].includes(e.key)) return;
    e.preventDefault();
    const at = clamp(this.cursor ?? 0, 0, d.rows.length - 1);
    const row = d.rows[at];
    if (e.key === 'Enter') {
      if (row.kind === 'group') return this.openRow(at);
      this.ctx.select({ layer: d.ov.layers[row.index].name });
      document.getElementById('mmx-layer')?.scrollIntoView?.({ behavior: 'smooth', block: 'start' });
      return;
    }
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      const g = row.kind === 'group' ? at : row.nested ? groupRowOf(d.rows, at) : -1;
      const isOpen = g >= 0 && (d.rows[g] as { open: boolean }).open;
      if (g >= 0 && isOpen === (e.key === 'ArrowLeft')) this.openRow(g);
      return;
    }
    const next = clamp(at + (e.key === 'ArrowDown' ? 1 : -1), 0, d.rows.length - 1);
    this.cursor = next;
    revealRow(d.hm, next);
    const target = d.rows[next];
    if (target.kind === 'layer') this.ctx.select({ layer: d.ov.layers[target.index].name });
    else d.hm.select({ row: next, col: null }, next);
  }

  /** The selected layer changed, nothing else: move the outline and the current line; open its group if closed. */
  private moveSelection(layer: string | null): void {
    const d = this.drawn!;
    const row = rowOfLayer(d.rows, d.ov, layer);
    const index = d.ov.layers.findIndex((l) => l.name === layer);
    const closed = this.groups?.all.find((g) => g.members.includes(index) && g.members.length > 1 && !this.groups!.open.has(g.key));
    if (row === null && closed && this.last && !this.bar.filter.value.trim()) {
      this.groups!.open.add(closed.key);
      this.render(this.last.s, this.last.ov, this.last.key);
    } else {
      d.hm.select({ row, col: null }, row);
      this.cursor = row ?? this.cursor;
    }
    for (const li of this.list.el.querySelectorAll<HTMLElement>('li[data-layer]')) li.classList.toggle('mmx-current', li.dataset.layer === layer);
  }
}

/** The bar over the overview of a large model: the layer-name filter, the count shown, expand and collapse all. */
function overviewBar(): { root: HTMLElement; filter: HTMLInputElement; count: HTMLElement; expand: HTMLButtonElement; collapse: HTMLButtonElement } {
  const root = el('div', 'mmx-overview-bar');
  const filter = el('input', 'mmx-filter');
  filter.type = 'search';
  filter.placeholder = 'Filter layers (text or regex)';
  filter.setAttribute('aria-label', 'Filter layers by name (text or regular expression)');
  const expand = el('button', 'mmx-btn mmx-btn-small', 'Expand all');
  const collapse = el('button', 'mmx-btn mmx-btn-small', 'Collapse all');
  expand.type = collapse.type = 'button';
  const count = el('span', 'mmx-sub mmx-overview-count');
  root.append(filter, expand, collapse, count);
  return { root, filter, count, expand, collapse };
}

function countText(rows: OverviewRow[], total: number, groups: LayerGroup[], filter: string): string {
  const several = groups.filter((g) => g.members.length > 1).length;
  if (filter.trim()) {
    const shown = rows.reduce((a, r) => a + (r.kind === 'layer' ? 1 : 0), 0);
    return `${shown} of ${total} layers match`;
  }
  return `${total} layers in ${several} groups`;
}

/** How row `row` is labelled: ▸/▾ and the layer count for a group, ⚠ before a layer with an alert. */
function rowDisplay(row: OverviewRow, label: string, ov: OverviewResponse, alerted: ReadonlySet<string>): { text: string; cls?: string } {
  if (row.kind === 'layer') return alerted.has(label) ? { text: `⚠ ${label}`, cls: 'mmx-row-alert' } : { text: label };
  const n = row.group.members.filter((i) => alerted.has(ov.layers[i].name)).length;
  return { text: `${row.open ? '▾' : '▸'} ${label}${n ? ` ⚠${n}` : ''}`, cls: n ? 'mmx-row-group mmx-row-alert' : 'mmx-row-group' };
}

/** The row of `layer` (null: not shown). */
function rowOfLayer(rows: OverviewRow[], ov: OverviewResponse, layer: string | null): number | null {
  const i = rows.findIndex((r) => r.kind === 'layer' && ov.layers[r.index].name === layer);
  return i >= 0 ? i : null;
}

/** The group row above nested row `at`. */
function groupRowOf(rows: OverviewRow[], at: number): number {
  for (let i = at; i >= 0; i--) if (rows[i].kind === 'group') return i;
  return -1;
}

/** Scrolls the page so that row `row` of the heatmap is in view. */
function revealRow(hm: HeatmapHandle, row: number): void {
  const canvas = hm.root.querySelector('canvas.mmx-hm-overlay');
  if (!canvas) return;
  const y = canvas.getBoundingClientRect().top + (row + 0.5) * hm.layout.cellH;
  const h = window.innerHeight || 800;
  if (y < 80 || y > h - 40) window.scrollBy({ top: y - h / 2 });
}

/**
 * The notice of the layers that were not recorded, then of those recorded only in part: one line per layer,
 * "Not recorded: <layer> — <reason>" or "Recorded in part: <layer> — <what is missing>" (text only); null when
 * there are none.
 */
export function notRecordedNotice(items: NotRecorded[], partly: NotRecorded[] = []): HTMLElement | null {
  if (!items.length && !partly.length) return null;
  const box = el('div', 'mmx-not-recorded');
  box.setAttribute('role', 'note');
  box.dataset.count = String(items.length);
  box.dataset.partly = String(partly.length);
  const ul = el('ul');
  const lines: [string, NotRecorded, boolean][] = [...items.map((n) => ['Not recorded: ', n, false] as [string, NotRecorded, boolean]), ...partly.map((n) => ['Recorded in part: ', n, true] as [string, NotRecorded, boolean])];
  for (const [label, n, inPart] of lines) {
    const li = el('li');
    li.dataset.layer = n.layer;
    if (inPart) li.dataset.partly = 'true';
    li.append(el('span', 'mmx-not-recorded-label', label), el('span', 'mmx-not-recorded-layer', n.layer), ' — ', el('span', 'mmx-not-recorded-reason', n.reason));
    ul.appendChild(li);
  }
  box.appendChild(ul);
  return box;
}

function nonFiniteRow(counts: number[], operands: string[]): TooltipRow[] {
  const text = nonFiniteText(counts, operands);
  return text ? [{ label: 'non-finite values', value: text }] : [];
}

/** The diagnosis lines of one role by layer name, in model order. */
export function diagnosisLines(al: AlertsResponse | null, role: string): Map<string, LayerDiagnosis> {
  const m = new Map<string, LayerDiagnosis>();
  for (const d of al?.diagnoses ?? []) if (d.role === role) m.set(d.layer, d);
  return m;
}

function diagnosisRow(d: LayerDiagnosis | undefined): TooltipRow[] {
  return d ? [{ label: 'diagnosis', value: d.text }] : [];
}
