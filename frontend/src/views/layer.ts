/**
 * Layer detail: the 3x3 pair matrix with exact counts and sums, the diagnosis (text, causes with shares, dead
 * rows and the layer's alerts; a note where the layer has no record at the step),
 * units x pairs at the step (sortable), units x steps of the near-zero share, and pairs x steps.
 */
import { rankedCauses } from '../api';
import { el, section } from '../dom';
import { compact, exact, exactF32, nonFiniteText, pct } from '../format';
import { type HeatmapHandle, createHeatmap } from '../heatmap';
import { CLASS_LETTERS, CLASS_NAMES, DISPLAY_ORDER, describePair, measureValues, pairStats, scoped, type Scope } from '../pairs';
import { textOn } from '../scales';
import { type State, operandsOf, roleLabel } from '../state';
import { type UnitSort, nonFiniteSteps, permuteRows, sortOrder, stepIndex, termOfColumn, timelineGrid, unitHeatmapGrid, unitsGrid } from '../transforms';
import { type DiagnosisResponse, type LayerTotals, TERMS, type TimelineResponse, type UnitHeatmap, type UnitsResponse } from '../types';
import { severityBar } from './alerts';
import { fractionScale, measureScale, pairGroups, pairMissingLabel, pairValues } from './measure';
import { pairRows } from './pairtext';
import { Slot } from './slot';
import type { View, ViewContext } from './view';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'measure', 'scope', 'step', 'layer', 'sequential', 'diverging', 'unitSort', 'runs'];

export class LayerView implements View {
  readonly el: HTMLElement;
  private picker = el('div', 'mmx-layer-picker');
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
    s.body.append(top, this.units.el, this.unitSteps.el, this.timeline.el);
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
        this.drawMatrix(s, s.selected[0], totals);
        this.loadRest(s, totals.name, changed);
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

  /** Diagnosis, units, units x steps and pairs x steps; a change of step alone only moves the step views' outline. */
  private loadRest(s: State, layer: string, changed: Set<keyof State> | 'all'): void {
    const data = this.ctx.data;
    void this.diagnosis.load(
      () => data.diagnosis(s),
      (d) => this.drawDiagnosis(s, layer, d),
    );
    // Units x pairs at the step; its sort order also orders the units x steps view.
    void this.units.load(
      () => data.units(s),
      (u) => this.drawUnits(s, s.selected[0], layer, u),
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
      colTitle: 'step',
      width: this.ctx.width(),
      maxPlotHeight: 420,
      minCellW: 2,
      maxCellW: 30,
      minCellH: 0.25,
      maxCellH: 16,
      selected: { row: null, col: stepIndex(uh.steps, s.step) },
      fileBase: [s.selected[0], s.role, layer],
      onCellClick: (_r, c) => this.ctx.select({ step: c === uh.steps.length - 1 ? null : uh.steps[c] }),
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
      colTitle: 'step',
      width: this.ctx.width(),
      maxPlotHeight: 9 * 18,
      minCellW: 2,
      maxCellW: 30,
      minCellH: 12,
      maxCellH: 18,
      selected: { row: null, col: stepIndex(t.steps, s.step) },
      fileBase: [s.selected[0], s.role, layer],
      onCellClick: (_r, c) => this.ctx.select({ step: c === t.steps.length - 1 ? null : t.steps[c] }),
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
      b.addEventListener('click', () => this.ctx.select({ step: step === steps[steps.length - 1] ? null : step }));
      box.append(i ? ' ' : '', b);
    });
    if (bad.length > shown.length) box.append(` … (${bad.length - shown.length} more)`);
    return box;
  }

  /** The diagnosis card: its text, the causes with their shares, dead rows, and the layer's alerts. */
  private drawDiagnosis(s: State, layer: string, d: DiagnosisResponse | null): void {
    const box = el('div', 'mmx-card mmx-diagnosis');
    box.dataset.layer = layer;
    const head = el('div', 'mmx-card-head');
    head.appendChild(el('h3', undefined, 'Diagnosis'));
    box.appendChild(head);
    if (!d) {
      box.classList.add('mmx-diagnosis-none');
      box.appendChild(el('p', 'mmx-muted', `${layer} has no ${roleLabel(s.role)} record at or before step ${s.step ?? 'latest'}.`));
      this.diagnosis.el.appendChild(box);
      return;
    }
    head.appendChild(el('span', 'mmx-sub', `${roleLabel(d.role)}, step ${d.step}`));
    box.appendChild(el('p', 'mmx-diagnosis-text', d.text));

    const causes = rankedCauses(d);
    if (causes.length) {
      box.appendChild(el('div', 'mmx-diagnosis-label', 'Causes (share of the near-zero results’ products)'));
      const ul = el('ul', 'mmx-causes');
      for (const c of causes) {
        const li = el('li', 'mmx-cause');
        li.dataset.share = String(c.share);
        const bar = el('span', 'mmx-share');
        bar.style.setProperty('--share', String(Math.max(0, Math.min(1, c.share ?? 0))));
        bar.title = `share ${exact(c.share)}`;
        li.append(bar, el('span', 'mmx-cause-share', pct(c.share, 0)), el('span', 'mmx-cause-name', c.name));
        ul.appendChild(li);
      }
      box.appendChild(ul);
    }
    if (d.dead_rows.length) {
      const shown = d.dead_rows.slice(0, 24).join(', ');
      const more = d.dead_rows.length > 24 ? `, … (${d.dead_rows.length} in all)` : '';
      box.appendChild(el('p', 'mmx-dead-rows', `Dead rows (near zero in every cell): ${shown}${more}`));
    }
    if (d.alerts.length) {
      box.appendChild(el('div', 'mmx-diagnosis-label', `Alerts for this layer (${d.alerts.length})`));
      const ul = el('ul', 'mmx-layer-alerts');
      for (const a of d.alerts) {
        const li = el('li', 'mmx-alert');
        li.dataset.kind = a.kind;
        li.append(severityBar(a.severity), el('span', 'mmx-alert-text', a.message));
        li.title = `${a.kind.replace(/_/g, ' ')} · severity ${exact(a.severity)} · since step ${a.first_step}`;
        ul.appendChild(li);
      }
      box.appendChild(ul);
    }
    this.diagnosis.el.appendChild(box);
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

  private drawMatrix(s: State, run: string, t: LayerTotals): void {
    const operands = operandsOf(s, run, t.name, s.role);
    const card = el('div', 'mmx-card mmx-matrix');
    card.dataset.layer = t.name;
    const head = el('div', 'mmx-card-head');
    head.appendChild(el('h3', undefined, `${t.name} · 3×3 pair matrix`));
    head.appendChild(el('span', 'mmx-sub', `${t.op}, ${t.units} units, ${roleLabel(s.role)}, step ${t.step}`));
    card.appendChild(head);

    const facts = el('dl', 'mmx-facts');
    const fact = (k: string, v: string) => {
      facts.append(el('dt', undefined, k), el('dd', undefined, v));
    };
    fact('near-zero results', `${exact(t.near_zero_cells)} of ${exact(t.cells)} (${pct(t.near_zero_fraction, 2)})`);
    fact('dead units', exact(t.dead_units));
    fact('thresholds', `${operands[0]} ${exact(t.thresholds[0])}, ${operands[1]} ${exact(t.thresholds[1])}, result ${exact(t.thresholds[2])}`);
    const nonFinite = nonFiniteText(t.nonfinite, operands);
    if (nonFinite) {
      fact('non-finite values', `${nonFinite} (NaN or inf)`);
      card.classList.add('mmx-has-nonfinite');
    }
    card.appendChild(facts);

    const tables = el('div', 'mmx-row');
    for (const scope of ['near_zero', 'all'] as Scope[]) tables.appendChild(this.matrixTable(s, t, scope, operands));
    card.appendChild(tables);
    this.matrix.el.appendChild(card);
  }

  private matrixTable(s: State, t: LayerTotals, scope: Scope, operands: string[]): HTMLElement {
    const { counts, sums } = scoped(t, scope);
    const vals = measureValues(counts, sums, s.measure);
    const scale = measureScale(s, [Float64Array.from(vals, (v) => (v === null ? NaN : v))]);
    const wrap = el('div', 'mmx-matrix-wrap');
    wrap.dataset.scope = scope;
    wrap.appendChild(el('div', 'mmx-matrix-title', scope === 'near_zero' ? 'near-zero result cells' : 'all result cells'));
    const table = el('table', 'mmx-matrix-table');
    const thead = el('thead');
    const hr = el('tr');
    hr.appendChild(el('th', 'mmx-corner-cell', `${operands[0]} ↓ / ${operands[1]} →`));
    for (let b = 0; b < 3; b++) hr.appendChild(el('th', b === 1 ? 'mmx-z' : undefined, `${CLASS_LETTERS[b]} · ${CLASS_NAMES[b]}`));
    thead.appendChild(hr);
    table.appendChild(thead);
    const tbody = el('tbody');
    for (let a = 0; a < 3; a++) {
      const tr = el('tr');
      tr.appendChild(el('th', a === 1 ? 'mmx-z' : undefined, `${CLASS_LETTERS[a]} · ${CLASS_NAMES[a]}`));
      for (let b = 0; b < 3; b++) {
        const i = 3 * a + b;
        const p = pairStats(counts, sums, i);
        const v = vals[i];
        const td = el('td', a === 1 || b === 1 ? 'mmx-zpair' : undefined);
        td.dataset.term = TERMS[i];
        if (v !== null && Number.isFinite(v)) {
          const bg = scale.colour(v);
          td.style.background = bg;
          td.style.color = textOn(bg);
        }
        td.appendChild(el('div', 'mmx-term', TERMS[i]));
        td.appendChild(el('div', 'mmx-big', s.measure === 'signed_sum' ? compact(p.sum) : s.measure === 'count_share' ? pct(p.countShare, 1) : pct(p.absSumShare, 1)));
        const small = el('div', 'mmx-small');
        small.appendChild(el('div', undefined, `count ${exact(p.count)}`));
        small.appendChild(el('div', undefined, `sum ${exact(p.sum)}`));
        small.appendChild(el('div', undefined, `mean ${p.mean === null ? '–' : compact(p.mean)}`));
        td.appendChild(small);
        td.title = `${TERMS[i]}: ${describePair(i, operands)}\ncount ${exact(p.count)}\nshare of counts ${exact(p.countShare)}\nsum ${exact(p.sum)}\nshare of |sums| ${exact(p.absSumShare)}\nmean ${exact(p.mean)}`;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    wrap.appendChild(table);
    return wrap;
  }
}
