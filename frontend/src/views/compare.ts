/**
 * Compare runs: the same heatmaps side by side with one shared colour scale, and a difference view A - B
 * with a diverging scale. Layers are aligned by name; a layer a run lacks is shown as missing, not zero.
 */
import { el, section } from '../dom';
import { exact, pct, signedPoints } from '../format';
import { type Grid, get, makeGrid, maxAbs, set } from '../grid';
import { createHeatmap } from '../heatmap';
import { describePair, measureLabel, pairStats, scoped } from '../pairs';
import { divergingScale, runColour } from '../scales';
import { type State, operandsOf, roleLabel, runIndex } from '../state';
import { compareHeatmapGrids, compareHeatmapResults, compareOverviewGrids, compareOverviewResults, differenceGrid, termOfColumn } from '../transforms';
import { type CompareHeatmapResponse, type CompareOverviewResponse, TERMS } from '../types';
import type { TooltipRow } from '../tooltip';
import { fractionScale, measureScale, pairGroups, pairValues, pctTick } from './measure';
import { pairRows } from './pairtext';
import { Slot } from './slot';
import type { View, ViewContext } from './view';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'measure', 'scope', 'step', 'sequential', 'diverging', 'diffA', 'diffB', 'runs'];

function diffRows(a: number, b: number, nameA: string, nameB: string, fmt: (v: number) => string): TooltipRow[] {
  return [
    { label: `A: ${nameA}`, value: Number.isNaN(a) ? 'missing' : fmt(a) },
    { label: `B: ${nameB}`, value: Number.isNaN(b) ? 'missing' : fmt(b) },
    { label: 'A − B', value: Number.isNaN(a) || Number.isNaN(b) ? 'missing' : fmt(a - b) },
  ];
}

export class CompareView implements View {
  readonly el: HTMLElement;
  private hint = el('p', 'mmx-muted');
  private pickers = el('div', 'mmx-compare-pickers');
  private sideBySide = new Slot('mmx-slot mmx-multiples');
  private fractions = new Slot();
  private diff = new Slot();
  private heatSide = new Slot('mmx-slot mmx-multiples');
  private heatDiff = new Slot();

  constructor(private ctx: ViewContext) {
    const s = section(
      'compare',
      'Compare runs',
      'The selected runs side by side on one shared colour scale, and the difference A − B on a diverging scale. Layers are matched by name; a layer a run does not have is hatched and labelled missing.',
    );
    this.el = s.root;
    s.head.appendChild(this.pickers);
    s.body.append(this.hint, this.sideBySide.el, this.fractions.el, this.diff.el, this.heatSide.el, this.heatDiff.el);
  }

  private pair(s: State): [string, string] {
    const sel = s.selected;
    const a = s.diffA && sel.includes(s.diffA) ? s.diffA : sel[0];
    let b = s.diffB && sel.includes(s.diffB) && s.diffB !== a ? s.diffB : sel.find((r) => r !== a)!;
    if (!b) b = sel[1];
    return [a, b];
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !RELEVANT.some((k) => changed.has(k))) return;
    const data = this.ctx.data;
    const runs = data.compared(s);
    this.pickers.textContent = '';
    if (runs.length < 2) {
      this.el.classList.add('mmx-compare-off');
      this.hint.textContent = 'Select two or more runs in the run selector to compare them.';
      for (const slot of [this.sideBySide, this.fractions, this.diff, this.heatSide, this.heatDiff]) slot.clear();
      return;
    }
    this.el.classList.remove('mmx-compare-off');
    this.hint.textContent = s.selected.length > runs.length ? `Comparing the first ${runs.length} selected runs.` : '';
    const [a, b] = this.pair(s);
    this.drawPickers(s, runs, a, b);
    const overviewP = data.compareOverview(s);
    void this.sideBySide.load(() => overviewP, (c) => this.drawSideBySide(s, c));
    void this.fractions.load(() => overviewP, (c) => this.drawFractions(s, c));
    void this.diff.load(() => overviewP, (c) => this.drawDiff(s, c, a, b));
    const heatP = data.compareHeatmap(s);
    void this.heatSide.load(() => heatP, (c) => this.drawHeatSide(s, c));
    void this.heatDiff.load(() => heatP, (c) => this.drawHeatDiff(s, c, a, b));
  }

  private drawPickers(s: State, runs: string[], a: string, b: string): void {
    const mk = (label: string, value: string, key: 'diffA' | 'diffB') => {
      const lab = el('label', 'mmx-field');
      lab.appendChild(el('span', 'mmx-field-label', label));
      const sel = el('select');
      sel.dataset.diff = key;
      for (const r of runs) sel.options.add(new Option(r, r, false, r === value));
      sel.value = value;
      sel.addEventListener('change', () => this.ctx.select({ [key]: sel.value }));
      lab.appendChild(sel);
      return lab;
    };
    this.pickers.append(mk('A', a, 'diffA'), mk('B', b, 'diffB'));
    void s;
  }

  /** Width for the heatmap inside one of n side-by-side cards (card padding and border excluded). */
  private panelWidth(n: number): number {
    const w = this.ctx.width();
    const chrome = 24;
    const per = Math.floor((w - 16 * (n - 1)) / n) - chrome;
    return per >= 360 ? per : Math.max(360, Math.floor((w - 16) / 2) - chrome);
  }

  private drawSideBySide(s: State, c: CompareOverviewResponse): void {
    const grids = compareOverviewGrids(c, s.measure, s.scope);
    const mScale = measureScale(s, grids.map(pairValues)); // one scale for all runs
    const fScale = fractionScale(s);
    const width = this.panelWidth(grids.length);
    compareOverviewResults(c).forEach((res, k) => {
      const run = c.runs[k];
      const operands = operandsOf(s, run, null, c.role);
      const hm = createHeatmap({
        id: `compare-overview-${k}`,
        title: run,
        subtitle: Number.isNaN(res.step) ? `${roleLabel(c.role)} · no records` : `${roleLabel(c.role)} · step ${res.step}`,
        accent: runColour(runIndex(s, run)),
        grid: grids[k],
        scale: mScale,
        groups: pairGroups(mScale, fScale, s.measure),
        rowTitle: 'layer',
        colTitle: 'pair',
        width,
        maxPlotHeight: 480,
        minCellW: 18,
        maxCellW: 40,
        minCellH: 3,
        maxCellH: 22,
        rowLabelMax: 22,
        fileBase: [run, c.role, 'compare'],
        tooltip: (r, col) => {
          const layer = res.layers[r];
          if (!layer) return { title: `${c.layers[r]} · ${run}`, rows: [{ label: 'layer', value: 'missing in this run' }] };
          const term = termOfColumn(col);
          if (term < 0) {
            return {
              title: `${layer.name} · ${run} · near-zero results`,
              rows: [
                { label: 'near-zero fraction', value: `${exact(layer.near_zero_fraction)} (${pct(layer.near_zero_fraction, 2)})` },
                { label: 'near-zero cells', value: `${exact(layer.near_zero_cells)} of ${exact(layer.cells)}` },
                { label: 'step', value: exact(layer.step) },
              ],
            };
          }
          const { counts, sums } = scoped(layer, s.scope);
          return {
            title: `${layer.name} · ${run} · ${TERMS[term]}`,
            subtitle: `${describePair(term, operands)} · step ${layer.step}`,
            rows: pairRows(pairStats(counts, sums, term), s.scope),
          };
        },
      });
      hm.root.dataset.run = run;
      this.sideBySide.el.appendChild(hm.root);
    });
  }

  /** Layers x runs of the near-zero result fraction: every run in one picture, in its colour. */
  private drawFractions(s: State, c: CompareOverviewResponse): void {
    const results = compareOverviewResults(c);
    const g: Grid = makeGrid(c.layers.length, c.runs.length, c.layers.slice(), c.runs.slice());
    results.forEach((res, k) => res.layers.forEach((l, r) => set(g, r, k, l ? l.near_zero_fraction : null)));
    const hm = createHeatmap({
      id: 'compare-fractions',
      title: 'Near-zero result fraction per layer and run',
      subtitle: `${roleLabel(c.role)} · hatched: the run has no such layer`,
      grid: g,
      scale: fractionScale(s),
      cellFormat: (v) => pct(v, 0),
      rowTitle: 'layer',
      colTitle: 'run',
      width: Math.min(this.ctx.width(), 200 + 90 * c.runs.length),
      maxPlotHeight: 480,
      minCellW: 40,
      maxCellW: 90,
      minCellH: 3,
      maxCellH: 22,
      fileBase: [c.role, 'compare', 'fractions'],
      tooltip: (r, k) => {
        const l = results[k].layers[r];
        return {
          title: `${c.layers[r]} · ${c.runs[k]}`,
          rows: l
            ? [
                { label: 'near-zero fraction', value: `${exact(l.near_zero_fraction)} (${pct(l.near_zero_fraction, 2)})` },
                { label: 'step', value: exact(l.step) },
              ]
            : [{ label: 'layer', value: 'missing in this run' }],
        };
      },
    });
    this.fractions.el.appendChild(hm.root);
  }

  private drawDiff(s: State, c: CompareOverviewResponse, a: string, b: string): void {
    const ia = c.runs.indexOf(a);
    const ib = c.runs.indexOf(b);
    if (ia < 0 || ib < 0) return;
    const grids = compareOverviewGrids(c, s.measure, s.scope);
    const d = differenceGrid(grids[ia], grids[ib], a, b);
    const pairScale = divergingScale(maxAbs(pairValues(d)), s.diverging, `A − B: ${measureLabel(s.measure)}`);
    if (s.measure !== 'signed_sum') pairScale.tickFormat = pctTick;
    const last = new Float64Array(d.rows);
    for (let r = 0; r < d.rows; r++) last[r] = get(d, r, d.cols - 1);
    const fracScale = divergingScale(maxAbs(last), s.diverging, 'A − B: near-zero result fraction');
    fracScale.tickFormat = pctTick;
    const fmt = s.measure === 'signed_sum' ? exact : (v: number) => `${exact(v)} (${pct(v, 2)})`;
    const groups = pairGroups(pairScale, fracScale, s.measure);
    if (s.measure !== 'signed_sum') for (const g of groups) g.cellFormat = signedPoints; // percentage points
    else groups[groups.length - 1].cellFormat = signedPoints;
    const hm = createHeatmap({
      id: 'compare-diff',
      title: `Difference A − B: ${a} − ${b}`,
      subtitle: `${roleLabel(c.role)} · red: larger in A, blue: larger in B`,
      grid: d,
      scale: pairScale,
      groups,
      rowTitle: 'layer',
      colTitle: 'pair',
      width: Math.min(this.ctx.width(), 760),
      maxPlotHeight: 480,
      minCellW: 24,
      maxCellW: 48,
      minCellH: 3,
      maxCellH: 22,
      fileBase: [a, 'minus', b, c.role],
      tooltip: (r, col) => {
        const term = termOfColumn(col);
        const va = get(grids[ia], r, col);
        const vb = get(grids[ib], r, col);
        return {
          title: `${d.rowLabels[r]} · ${term < 0 ? 'near-zero results' : TERMS[term]}`,
          subtitle: d.rowNotes?.[r] ?? undefined,
          rows: diffRows(va, vb, a, b, term < 0 ? (v) => `${exact(v)} (${pct(v, 2)})` : fmt),
        };
      },
    });
    this.diff.el.appendChild(hm.root);
  }

  private drawHeatSide(s: State, c: CompareHeatmapResponse): void {
    const grids = compareHeatmapGrids(c);
    const results = compareHeatmapResults(c);
    const scale = fractionScale(s); // shares are on [0, 1] for every run
    const width = this.panelWidth(grids.length);
    grids.forEach((g, k) => {
      const run = c.runs[k];
      const res = results[k];
      const hm = createHeatmap({
        id: `compare-wherewhen-${k}`,
        title: run,
        subtitle: `where and when · ${res.steps.length} steps`,
        accent: runColour(runIndex(s, run)),
        grid: g,
        scale,
        rowTitle: 'layer',
        colTitle: 'step',
        width,
        maxPlotHeight: 360,
        minCellW: 2,
        maxCellW: 30,
        minCellH: 3,
        maxCellH: 22,
        rowLabelMax: 22,
        fileBase: [run, c.role, 'compare'],
        tooltip: (r, col) => {
          const v = get(g, r, col);
          return {
            title: `${c.layers[r]} · ${run} · step ${res.steps[col]}`,
            rows: [
              {
                label: 'near-zero fraction',
                value: g.rowNotes?.[r] ? 'layer missing in this run' : Number.isNaN(v) ? 'no record at this step' : `${exact(v)} (${pct(v, 2)})`,
              },
            ],
          };
        },
      });
      hm.root.dataset.run = run;
      this.heatSide.el.appendChild(hm.root);
    });
  }

  private drawHeatDiff(s: State, c: CompareHeatmapResponse, a: string, b: string): void {
    const ia = c.runs.indexOf(a);
    const ib = c.runs.indexOf(b);
    if (ia < 0 || ib < 0) return;
    const grids = compareHeatmapGrids(c);
    const d = differenceGrid(grids[ia], grids[ib], a, b);
    const scale = divergingScale(maxAbs(d.values), s.diverging, 'A − B: near-zero result fraction');
    scale.tickFormat = pctTick;
    const hm = createHeatmap({
      id: 'compare-wherewhen-diff',
      title: `Where and when, A − B: ${a} − ${b}`,
      subtitle: 'steps matched by value; hatched where either run has no record',
      grid: d,
      scale,
      rowTitle: 'layer',
      colTitle: 'step',
      width: this.ctx.width(),
      maxPlotHeight: 360,
      minCellW: 2,
      maxCellW: 30,
      minCellH: 3,
      maxCellH: 22,
      fileBase: [a, 'minus', b, c.role, 'wherewhen'],
      tooltip: (r, col) => {
        const step = d.colLabels[col];
        const ga = grids[ia];
        const gb = grids[ib];
        const va = lookup(ga, d.rowLabels[r], step);
        const vb = lookup(gb, d.rowLabels[r], step);
        return {
          title: `${d.rowLabels[r]} · step ${step}`,
          subtitle: d.rowNotes?.[r] ?? undefined,
          rows: diffRows(va, vb, a, b, (v) => `${exact(v)} (${pct(v, 2)})`),
        };
      },
    });
    this.heatDiff.el.appendChild(hm.root);
  }
}

function lookup(g: Grid, row: string, col: string): number {
  const r = g.rowLabels.indexOf(row);
  const c = g.colLabels.indexOf(col);
  return r < 0 || c < 0 ? NaN : get(g, r, c);
}
