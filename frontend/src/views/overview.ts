/**
 * Model overview: layers (model order) x the nine pairs, near-zero pairs grouped, near-zero fraction beside;
 * below it the layers that were not recorded, with why (from /runs), and each layer's diagnosis line (from /alerts
 * at the same step), also in the cells' tooltips.
 */
import { el, section } from '../dom';
import { exact, nonFiniteText, pct } from '../format';
import { type HeatmapHandle, createHeatmap } from '../heatmap';
import { describePair, pairStats, scoped } from '../pairs';
import { notRecordedOf, operandsOf, roleLabel, runInfo, type State } from '../state';
import { overviewGridOf, termOfColumn, withInactiveColumn } from '../transforms';
import type { TooltipRow } from '../tooltip';
import type { AlertsResponse, LayerDiagnosis, NotRecorded, OverviewResponse } from '../types';
import { TERMS } from '../types';
import { fractionScale, measureScale, pairGroups, pairMissingLabel, pairValues } from './measure';
import { pairRows } from './pairtext';
import { Slot } from './slot';
import type { View, ViewContext } from './view';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'measure', 'scope', 'step', 'layer', 'sequential', 'diverging', 'runs'];

export class OverviewView implements View {
  readonly el: HTMLElement;
  private slot = new Slot();
  private notRecorded = el('div', 'mmx-not-recorded-slot');
  private list = new Slot('mmx-slot mmx-diagnoses-slot');
  /** Diagnosis lines by layer name, for the run, role and step in `linesKey`. */
  private lines = new Map<string, LayerDiagnosis>();
  private linesKey = '';
  /** The heatmap on screen and its layers, while no load is pending. */
  private drawn: { hm: HeatmapHandle; ov: OverviewResponse } | null = null;

  constructor(private ctx: ViewContext) {
    const s = section(
      'overview',
      'Model overview',
      'Where each layer’s products come from, by operand-class pair (first letter = first operand; P positive, Z near zero, N negative). ' +
        'Pairs with a near-zero operand are grouped on the right; then the share of the layer’s results that are near zero and, for layers with an activation of their own, the share of cells where it is inactive. Click a row to open the layer.',
    );
    this.el = s.root;
    s.body.append(this.slot.el, this.notRecorded, this.list.el);
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !RELEVANT.some((k) => changed.has(k))) return;
    if (this.drawn && changed !== 'all' && changed.size === 1 && changed.has('layer')) return this.moveSelection(s.layer);
    this.drawn = null;
    const run = s.selected[0];
    this.notRecorded.textContent = '';
    if (!run) {
      this.slot.clear();
      this.list.clear();
      return;
    }
    const skipped = notRecordedNotice(notRecordedOf(runInfo(s, run)));
    if (skipped) this.notRecorded.appendChild(skipped);
    const data = this.ctx.data;
    const key = JSON.stringify([run, s.role, s.step]);
    void this.slot.load(
      () => data.overview(s),
      (ov) => this.draw(s, ov, key),
    );
    // Each layer's diagnosis line comes from /alerts at the same step, drawn when it arrives (the heatmap does
    // not wait for it); without it the overview is complete all the same (the alerts panel shows the error).
    void this.list.load(
      () => data.diagnosisLines(s),
      (al) => {
        this.lines = diagnosisLines(al, s.role);
        this.linesKey = key;
        if (this.lines.size) this.list.el.appendChild(this.diagnosisList(s, this.lines));
      },
    );
  }

  private draw(s: State, ov: OverviewResponse, key: string): void {
    const line = (layer: string) => (this.linesKey === key ? this.lines.get(layer) : undefined);
    if (!ov.layers.length) {
      this.slot.clear(`Run has no layers recorded for the role “${roleLabel(s.role)}”.`);
      return;
    }
    const pairs = overviewGridOf(ov, s.measure, s.scope);
    const mScale = measureScale(s, [pairValues(pairs)]);
    const fScale = fractionScale(s);
    // A last column of each layer's inactive share, where some layer has an activation of its own.
    const grid = withInactiveColumn(pairs, ov.layers);
    const inactiveCol = grid.cols > pairs.cols ? pairs.cols : -1;
    const selRow = ov.layers.findIndex((l) => l.name === s.layer);
    const hm = createHeatmap({
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
      maxPlotHeight: 560,
      maxCellW: 52,
      minCellW: 26,
      maxCellH: 24,
      minCellH: 3,
      selected: { row: selRow >= 0 ? selRow : null, col: null },
      emphasisRow: selRow >= 0 ? selRow : null,
      fileBase: [ov.run, ov.role, `step${ov.step}`],
      onCellClick: (r) => this.ctx.select({ layer: ov.layers[r].name }),
      tooltip: (r, c) => {
        const layer = ov.layers[r];
        const term = termOfColumn(c);
        const operands = operandsOf(s, ov.run, layer.name, ov.role);
        if (c === inactiveCol) {
          const f = layer.inactive_fraction ?? null;
          return {
            title: `${layer.name} · inactive share`,
            subtitle: `step ${layer.step}`,
            rows: [{ label: 'activation inactive', value: f === null ? 'no activation of its own' : `${exact(f)} (${pct(f, 2)} of cells)` }, ...diagnosisRow(line(layer.name))],
          };
        }
        if (term < 0) {
          return {
            title: `${layer.name} · near-zero results`,
            subtitle: `${layer.op}, ${layer.units} units, step ${layer.step}`,
            rows: [
              { label: 'near-zero fraction', value: `${exact(layer.near_zero_fraction)} (${pct(layer.near_zero_fraction, 2)})` },
              { label: 'near-zero cells', value: `${exact(layer.near_zero_cells)} of ${exact(layer.cells)}` },
              { label: 'dead units', value: exact(layer.dead_units) },
              { label: 'thresholds', value: layer.thresholds.map((t) => exact(t)).join(' / ') },
              ...nonFiniteRow(layer.nonfinite, operands),
              ...diagnosisRow(line(layer.name)),
            ],
          };
        }
        const { counts, sums } = scoped(layer, s.scope);
        return {
          title: `${layer.name} · ${TERMS[term]}`,
          subtitle: `${describePair(term, operands)} · step ${layer.step}`,
          rows: [...pairRows(pairStats(counts, sums, term), s.scope), ...diagnosisRow(line(layer.name))],
        };
      },
    });
    this.slot.el.appendChild(hm.root);
    this.drawn = { hm, ov };
  }

  /** The selected layer changed, nothing else: move the outline, the emphasised label and the current line. */
  private moveSelection(layer: string | null): void {
    const row = this.drawn!.ov.layers.findIndex((l) => l.name === layer);
    this.drawn!.hm.select({ row: row >= 0 ? row : null, col: null }, row >= 0 ? row : null);
    for (const li of this.list.el.querySelectorAll<HTMLElement>('li[data-layer]')) li.classList.toggle('mmx-current', li.dataset.layer === layer);
  }

  /** One line per layer (model order): the layer's name and its diagnosis; a click opens the layer. */
  private diagnosisList(s: State, lines: Map<string, LayerDiagnosis>): HTMLElement {
    const box = el('div', 'mmx-diagnoses');
    box.appendChild(el('div', 'mmx-diagnosis-label', `Diagnosis per layer (${roleLabel(s.role)})`));
    const ul = el('ul');
    for (const [name, d] of lines) {
      const li = el('li', 'mmx-clickable');
      li.dataset.layer = name;
      if (name === this.ctx.state().layer) li.classList.add('mmx-current'); // the layer now, should it have moved since
      li.title = `Open ${name} (step ${d.step})`;
      li.append(el('span', 'mmx-diagnoses-layer', name), el('span', 'mmx-diagnoses-text', d.text));
      li.addEventListener('click', () => this.ctx.select({ layer: name }));
      ul.appendChild(li);
    }
    box.appendChild(ul);
    return box;
  }
}

/**
 * The notice of the layers that were not recorded: one line per layer, "Not recorded: <layer> — <reason>" (text
 * only); null when there are none.
 */
export function notRecordedNotice(items: NotRecorded[]): HTMLElement | null {
  if (!items.length) return null;
  const box = el('div', 'mmx-not-recorded');
  box.setAttribute('role', 'note');
  box.dataset.count = String(items.length);
  const ul = el('ul');
  for (const n of items) {
    const li = el('li');
    li.dataset.layer = n.layer;
    li.append(el('span', 'mmx-not-recorded-label', 'Not recorded: '), el('span', 'mmx-not-recorded-layer', n.layer), ' — ', el('span', 'mmx-not-recorded-reason', n.reason));
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
