/**
 * Layer detail: the layer picker, the matrix and diagnosis cards (layercards.ts), units x pairs at the latest step
 * with unit detail (sortable; unitdetail.ts notes an earlier step or none), units x steps of the near-zero share, and
 * pairs x steps with the steps whose products were not finite.
 * A change of step alone moves the outline of the two step views instead of redrawing them.
 */
import { el, section } from '../dom';
import { exact, exactF32, pct } from '../format';
import { type HeatmapHandle, createHeatmap } from '../heatmap';
import { DISPLAY_ORDER, describePair, pairStats, scoped } from '../pairs';
import { type State, operandsOf, stepPatch } from '../state';
import { type UnitSort, nonFiniteSteps, permuteRows, sortOrder, stepIndex, termOfColumn, timelineGrid, unitHeatmapGrid, unitsGrid } from '../transforms';
import { TERMS, type TimelineResponse, type UnitHeatmap, type UnitsResponse } from '../types';
import { chainCard } from './chain';
import { diagnosisCard, matrixCard } from './layercards';
import { fractionScale, measureScale, pairGroups, pairMissingLabel, pairValues } from './measure';
import { pairRows } from './pairtext';
import { Slot } from './slot';
import { unitDetailBox } from './unitdetail';
import type { View, ViewContext } from './view';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'measure', 'scope', 'step', 'layer', 'sequential', 'diverging', 'unitSort', 'runs'];

export class LayerView implements View {
  readonly el: HTMLElement;
  private picker = el('div', 'mmx-layer-picker');
  private chain = new Slot('mmx-slot mmx-chain-slot');
  private matrix = new Slot('mmx-slot mmx-matrix-slot');
  private diagnosis = new Slot('mmx-slot mmx-diagnosis-slot');
  private units = new Slot();
  private unitSteps = new Slot();
  private timeline = new Slot();
  /** The step-by-step heatmaps on screen and the state they show (but the step), keyed by view. */
  private drawn = new Map<'unitSteps' | 'timeline', { hm: HeatmapHandle; steps: number[]; key: string }>();

  constructor(private ctx: ViewContext) {
    const s = section(
      'layer',
      'Layer detail',
      'One layer at the selected step: the nine pairs as a 3×3 matrix (rows: first operand, columns: second operand) with exact counts and sums, then per unit.',
    );
    this.el = s.root;
    s.head.appendChild(this.picker);
    const top = el('div', 'mmx-row');
    top.append(this.matrix.el, this.diagnosis.el);
    s.body.append(this.chain.el, top, this.units.el, this.unitSteps.el, this.timeline.el);
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !RELEVANT.some((k) => changed.has(k))) return;
    if (!s.selected[0]) return;
    void this.matrix.load(
      () => this.ctx.data.layerAtStep(s),
      ({ names, totals }) => {
        // No layer chosen yet (or none at this step): the defaults choose one and this view redraws with it.
        if (!totals) return names.length ? undefined : this.matrix.clear('No layers.');
        this.drawPicker(names, totals.name);
        this.matrix.el.appendChild(matrixCard(s, s.selected[0], totals));
        this.loadRest(s, totals.name, totals.step, changed);
      },
    );
  }

  private drawPicker(names: string[], layer: string): void {
    this.picker.textContent = '';
    const lab = el('label', 'mmx-field');
    lab.appendChild(el('span', 'mmx-field-label', 'Layer'));
    const sel = el('select');
    sel.className = 'mmx-layer-select';
    for (const n of names) sel.options.add(new Option(n, n, false, n === layer));
    sel.value = layer;
    sel.addEventListener('change', () => this.ctx.select({ layer: sel.value }));
    lab.appendChild(sel);
    this.picker.appendChild(lab);
  }

  /**
   * Diagnosis, units, units x steps and pairs x steps of the layer whose record at the selection is at `layerStep`;
   * a change of step alone only moves the step views' outline.
   */
  private loadRest(s: State, layer: string, layerStep: number, changed: Set<keyof State> | 'all'): void {
    const data = this.ctx.data;
    void this.chain.load(
      () => data.chain(s),
      (c) => {
        const card = chainCard(c, s.role, (role) => this.ctx.select({ layer, role }));
        if (card) this.chain.el.appendChild(card);
      },
    );
    void this.diagnosis.load(
      () => data.diagnosis(s),
      (d) => this.diagnosis.el.appendChild(diagnosisCard(s, layer, d)),
    );
    // Units x pairs at the latest step with unit detail (or a note saying there is none); its sort order also
    // orders the units x steps view.
    void this.units.load(
      () => data.units(s),
      (u) => {
        const note = unitDetailBox(layerStep, u?.step ?? null);
        if (note) this.units.el.appendChild(note);
        if (u) this.drawUnits(s, s.selected[0], layer, u);
      },
    );
    const fresh = changed === 'all' || changed.has('runs');
    const base = [s.selected[0], s.role, layer, s.measure, s.scope, s.sequential];
    // The units x steps rows follow the sort of the units at the step, unless they are in unit order.
    const unitKey = JSON.stringify([...base, s.unitSort, s.unitSort === 'unit' ? null : s.step]);
    this.loadStepView(
      'unitSteps',
      this.unitSteps,
      s,
      fresh,
      unitKey,
      () => data.unitSteps(s),
      ({ uh, u }) => ({ hm: this.drawUnitSteps(s, layer, uh, u), steps: uh.steps }),
    );
    // The pairs over steps depend neither on the unit sort nor on the step (but for its outline).
    const timelineKey = JSON.stringify([...base, s.diverging]);
    this.loadStepView(
      'timeline',
      this.timeline,
      s,
      fresh,
      timelineKey,
      () => data.timeline(s),
      (t) => ({ hm: this.drawTimeline(s, layer, t), steps: t.steps }),
    );
  }

  /**
   * Redraws a step view, or only moves its step outline when it already shows `key` (and `fresh` is false).
   * The drawn heatmap and its steps are remembered under `name` once they are on screen.
   */
  private loadStepView<T>(
    name: 'unitSteps' | 'timeline',
    slot: Slot,
    s: State,
    fresh: boolean,
    key: string,
    load: () => Promise<T>,
    draw: (v: T) => { hm: HeatmapHandle; steps: number[] },
  ): void {
    const shown = this.drawn.get(name);
    if (shown && !fresh && shown.key === key) return shown.hm.select({ row: null, col: stepIndex(shown.steps, s.step) });
    this.drawn.delete(name);
    void slot.load(load, (v) => this.drawn.set(name, { ...draw(v), key }));
  }

  /** What the two step views share: the layer's steps as columns, the selected one outlined, a click selects one. */
  private stepColumns(s: State, layer: string, steps: number[]) {
    return {
      colTitle: 'step',
      width: this.ctx.width(),
      minCellW: 2,
      maxCellW: 30,
      selected: { row: null, col: stepIndex(steps, s.step) },
      fileBase: [s.selected[0], s.role, layer],
      onCellClick: (_r: number, c: number) => this.ctx.select(stepPatch(steps, steps[c])),
    };
  }

  /** The layer's units x steps of the near-zero share (rows sorted as the units x pairs view, when it loaded). */
  private drawUnitSteps(s: State, layer: string, uh: UnitHeatmap, u: UnitsResponse | null): HeatmapHandle {
    let grid = unitHeatmapGrid(uh, u?.units ?? uh.rows * uh.groupSize);
    let order: number[] | null = null;
    if (u && u.counts.length === uh.rows && s.unitSort !== 'unit') {
      order = sortOrder(unitsGrid(u, s.measure, s.scope), s.unitSort);
      grid = permuteRows(grid, order);
    }
    const hm = createHeatmap({
      id: 'unitsteps',
      title: `${layer} · units × steps`,
      subtitle: `near-zero share per ${uh.groupSize > 1 ? `group of ${uh.groupSize} units` : 'unit'}, ${uh.rows} rows × ${uh.steps.length} steps${order ? ', sorted as above' : ''}`,
      grid,
      scale: fractionScale(s),
      rowTitle: uh.groupSize > 1 ? 'units' : 'unit',
      ...this.stepColumns(s, layer, uh.steps),
      maxPlotHeight: 420,
      minCellH: 0.25,
      maxCellH: 16,
      tooltip: (r, c) => {
        const v = grid.values[r * grid.cols + c];
        return {
          title: `${layer} · unit ${grid.rowLabels[r]} · step ${uh.steps[c]}`,
          rows: [{ label: 'near-zero fraction', value: Number.isNaN(v) ? 'no record at this step' : `${exactF32(v)} (${pct(v, 2)})` }],
        };
      },
    });
    this.unitSteps.el.appendChild(hm.root);
    return hm;
  }

  /** The layer's nine pairs over its recorded steps, and the steps whose products were not finite. */
  private drawTimeline(s: State, layer: string, t: TimelineResponse): HeatmapHandle {
    const grid = timelineGrid(t, s.measure, s.scope);
    const operands = operandsOf(s, s.selected[0], layer, s.role);
    const hm = createHeatmap({
      id: 'timeline',
      title: `${layer} · pairs over steps`,
      subtitle: `${t.steps.length} recorded steps`,
      grid,
      scale: measureScale(s, [grid.values]),
      rowTitle: 'pair',
      ...this.stepColumns(s, layer, t.steps),
      maxPlotHeight: 9 * 18,
      minCellH: 12,
      maxCellH: 18,
      tooltip: (r, c) => {
        const term = DISPLAY_ORDER[r];
        const rec = { counts: t.counts[c], sums: t.sums[c], near_zero_counts: t.near_zero_counts[c], near_zero_sums: t.near_zero_sums[c] };
        const { counts, sums } = scoped(rec, s.scope);
        return {
          title: `${layer} · ${TERMS[term]} · step ${t.steps[c]}`,
          subtitle: describePair(term, operands),
          rows: pairRows(pairStats(counts, sums, term), s.scope),
        };
      },
    });
    this.timeline.el.appendChild(hm.root);
    const bad = nonFiniteSteps(t);
    if (bad.length) this.timeline.el.appendChild(this.nonFiniteNote(layer, bad, t.steps));
    return hm;
  }

  /** Which recorded steps of the layer saw NaN or inf in its products; a step's button selects it. */
  private nonFiniteNote(layer: string, bad: number[], steps: number[]): HTMLElement {
    const box = el('div', 'mmx-warning mmx-nonfinite-steps');
    box.setAttribute('role', 'status');
    box.dataset.steps = bad.join(',');
    box.appendChild(el('strong', undefined, `Non-finite values (NaN or inf) in ${layer}’s products at ${bad.length} of ${steps.length} recorded steps: `));
    const shown = bad.slice(0, 20);
    shown.forEach((step, i) => {
      const b = el('button', 'mmx-btn mmx-btn-small mmx-step-link', String(step));
      b.type = 'button';
      b.title = `Show step ${step}`;
      b.addEventListener('click', () => this.ctx.select(stepPatch(steps, step)));
      box.append(i ? ' ' : '', b);
    });
    if (bad.length > shown.length) box.append(` … (${bad.length - shown.length} more)`);
    return box;
  }

  private drawUnits(s: State, run: string, layer: string, u: UnitsResponse): void {
    const full = unitsGrid(u, s.measure, s.scope);
    const order = sortOrder(full, s.unitSort);
    const grid = permuteRows(full, order);
    const mScale = measureScale(s, [pairValues(full)]);
    const operands = operandsOf(s, run, layer, s.role);

    const sortSel = el('select');
    sortSel.className = 'mmx-sort';
    sortSel.title = 'Order of the unit rows';
    const opts: { value: UnitSort; label: string }[] = [
      { value: 'near_zero', label: 'near zero most often first' },
      { value: 'unit', label: 'unit order' },
      ...DISPLAY_ORDER.map((term, c) => ({ value: `pair:${c}` as UnitSort, label: `largest ${TERMS[term]} first` })),
    ];
    for (const o of opts) sortSel.options.add(new Option(`sort: ${o.label}`, o.value, false, o.value === s.unitSort));
    sortSel.value = s.unitSort;
    sortSel.addEventListener('change', () => this.ctx.select({ unitSort: sortSel.value as UnitSort }));

    const hm = createHeatmap({
      id: 'units',
      title: `${layer} · units × pairs at step ${u.step}`,
      subtitle: `${u.units} units${u.group_size > 1 ? ` in ${u.counts.length} groups of ${u.group_size}` : ''}`,
      grid,
      scale: mScale,
      groups: pairGroups(mScale, fractionScale(s), s.measure),
      missingLabel: pairMissingLabel(s),
      rowTitle: u.group_size > 1 ? 'units' : 'unit',
      colTitle: 'pair',
      width: Math.min(this.ctx.width(), 760),
      maxPlotHeight: 420,
      minCellW: 24,
      maxCellW: 48,
      minCellH: 0.25,
      maxCellH: 18,
      headerExtras: [sortSel],
      fileBase: [run, s.role, layer, `step${u.step}`],
      onCellClick: (_r, c) => {
        const next: UnitSort = c === grid.cols - 1 ? 'near_zero' : `pair:${c}`;
        this.ctx.select({ unitSort: next });
      },
      tooltip: (r, c) => {
        const src = order[r];
        const term = termOfColumn(c);
        if (term < 0) {
          const f = u.near_zero_fraction[src];
          return {
            title: `${layer} · unit ${grid.rowLabels[r]} · near-zero results`,
            subtitle: `step ${u.step}`,
            rows: [
              { label: 'near-zero fraction', value: `${exact(f)} (${pct(f, 2)})` },
              { label: 'near-zero cells', value: `${exact(u.near_zero_cells[src])} of ${exact(u.cells[src])}` },
            ],
          };
        }
        const rec = { counts: u.counts[src], sums: u.sums[src], near_zero_counts: u.near_zero_counts[src], near_zero_sums: u.near_zero_sums[src] };
        const { counts, sums } = scoped(rec, s.scope);
        return {
          title: `${layer} · unit ${grid.rowLabels[r]} · ${TERMS[term]}`,
          subtitle: `${describePair(term, operands)} · step ${u.step}`,
          rows: pairRows(pairStats(counts, sums, term), s.scope),
        };
      },
    });
    this.units.el.appendChild(hm.root);
  }
}
