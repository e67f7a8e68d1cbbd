/** Model overview: layers (model order) x the nine pairs, near-zero pairs grouped, near-zero fraction beside. */
import { exact, pct } from '../format';
import { createHeatmap } from '../heatmap';
import { pairStats, scoped } from '../pairs';
import { operandsOf, roleLabel, type State } from '../state';
import { overviewGridOf, termOfColumn } from '../transforms';
import type { OverviewResponse } from '../types';
import { TERMS } from '../types';
import { type View, type ViewContext, Slot, fractionScale, measureScale, pairGroups, pairMissingLabel, pairRows, pairSubtitle, pairValues, section } from './common';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'measure', 'scope', 'step', 'layer', 'sequential', 'diverging'];

export class OverviewView implements View {
  readonly el: HTMLElement;
  private slot = new Slot();

  constructor(private ctx: ViewContext) {
    const s = section(
      'overview',
      'Model overview',
      'Where each layer’s products come from, by operand-class pair (first letter = first operand; P positive, Z near zero, N negative). ' +
        'Pairs with a near-zero operand are grouped on the right; the last column is the share of the layer’s results that are near zero. Click a row to open the layer.',
    );
    this.el = s.root;
    s.body.appendChild(this.slot.el);
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !RELEVANT.some((k) => changed.has(k))) return;
    const run = s.selected[0];
    if (!run) return this.slot.clear();
    void this.slot.load(
      () => this.ctx.api.overview(run, s.role, s.step),
      (ov) => this.draw(s, ov),
    );
  }

  private draw(s: State, ov: OverviewResponse): void {
    if (!ov.layers.length) {
      this.slot.clear(`Run has no layers recorded for the role “${roleLabel(s.role)}”.`);
      return;
    }
    const grid = overviewGridOf(ov, s.measure, s.scope);
    const mScale = measureScale(s, [pairValues(grid)]);
    const fScale = fractionScale(s);
    const selRow = ov.layers.findIndex((l) => l.name === s.layer);
    const hm = createHeatmap({
      id: 'overview',
      title: `${ov.run} · ${roleLabel(ov.role)} · step ${ov.step}`,
      subtitle: `${ov.layers.length} layers`,
      grid,
      scale: mScale,
      groups: pairGroups(mScale, fScale, s.measure),
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
      onCellClick: (r) => this.ctx.store.set({ layer: ov.layers[r].name }),
      tooltip: (r, c) => {
        const layer = ov.layers[r];
        const term = termOfColumn(c);
        const operands = operandsOf(s, ov.run, layer.name, ov.role);
        if (term < 0) {
          return {
            title: `${layer.name} · near-zero results`,
            subtitle: `${layer.op}, ${layer.units} units, step ${layer.step}`,
            rows: [
              { label: 'near-zero fraction', value: `${exact(layer.near_zero_fraction)} (${pct(layer.near_zero_fraction, 2)})` },
              { label: 'near-zero cells', value: `${exact(layer.near_zero_cells)} of ${exact(layer.cells)}` },
              { label: 'dead units', value: exact(layer.dead_units) },
              { label: 'thresholds', value: layer.thresholds.map((t) => exact(t)).join(' / ') },
            ],
          };
        }
        const { counts, sums } = scoped(layer, s.scope);
        return {
          title: `${layer.name} · ${TERMS[term]}`,
          subtitle: `${pairSubtitle(term, operands)} · step ${layer.step}`,
          rows: pairRows(pairStats(counts, sums, term), s.scope),
        };
      },
    });
    this.slot.el.appendChild(hm.root);
  }
}
