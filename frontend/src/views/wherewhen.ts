/** Where and when: layers x steps of the near-zero result fraction. Clicking a cell selects layer and step. */
import { exact, pct } from '../format';
import { createHeatmap } from '../heatmap';
import { roleLabel, type State, stepPatch } from '../state';
import { heatmapGrid, stepIndex } from '../transforms';
import type { HeatmapResponse } from '../types';
import { section } from '../dom';
import type { HeatmapHandle } from '../heatmap';
import { fractionScale } from './measure';
import { Slot } from './slot';
import type { View, ViewContext } from './view';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'step', 'layer', 'sequential'];
/** Changes that only move the selection outline. */
const SELECTION: (keyof State)[] = ['step', 'layer'];

export class WhereWhenView implements View {
  readonly el: HTMLElement;
  private slot = new Slot();
  /** The heatmap on screen and its data, while no load is pending. */
  private drawn: { hm: HeatmapHandle; h: HeatmapResponse } | null = null;

  constructor(private ctx: ViewContext) {
    const s = section(
      'wherewhen',
      'Where and when',
      'Share of each layer’s results that are near zero, at every recorded step. Hatched cells have no record at that step. Click a cell to select that layer and step.',
    );
    this.el = s.root;
    s.body.appendChild(this.slot.el);
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !RELEVANT.some((k) => changed.has(k))) return;
    const run = s.selected[0];
    if (this.drawn && changed !== 'all' && [...changed].every((k) => SELECTION.includes(k))) {
      const { hm, h } = this.drawn;
      const { row, col } = selection(s, h);
      return hm.select({ row, col }, row);
    }
    this.drawn = null;
    if (!run) return this.slot.clear();
    void this.slot.load(
      () => this.ctx.data.whereWhen(s),
      (h) => this.draw(s, h),
    );
  }

  private draw(s: State, h: HeatmapResponse): void {
    if (!h.layers.length || !h.steps.length) {
      this.slot.clear('No records for this role.');
      return;
    }
    const grid = heatmapGrid(h);
    const { row, col } = selection(s, h);
    const hm = createHeatmap({
      id: 'wherewhen',
      title: `${h.run} · ${roleLabel(h.role)}`,
      subtitle: `${h.layers.length} layers × ${h.steps.length} steps`,
      grid,
      scale: fractionScale(s),
      rowTitle: 'layer',
      colTitle: 'step',
      width: this.ctx.width(),
      maxPlotHeight: 480,
      minCellW: 2,
      maxCellW: 36,
      minCellH: 3,
      maxCellH: 22,
      selected: { row, col },
      emphasisRow: row,
      fileBase: [h.run, h.role],
      onCellClick: (r, c) => {
        this.ctx.select({ layer: h.layers[r], ...stepPatch(h.steps, h.steps[c]) });
      },
      tooltip: (r, c) => {
        const v = h.values[r]?.[c];
        return {
          title: `${h.layers[r]} · step ${h.steps[c]}`,
          rows:
            v === null || v === undefined
              ? [{ label: 'near-zero fraction', value: 'no record at this step' }]
              : [{ label: 'near-zero fraction', value: `${exact(v)} (${pct(v, 2)})` }],
        };
      },
    });
    this.slot.el.appendChild(hm.root);
    this.drawn = { hm, h };
  }
}

/** The selected layer's row (null: not in this run) and the selected step's column. */
function selection(s: State, h: HeatmapResponse): { row: number | null; col: number } {
  const row = h.layers.indexOf(s.layer ?? '');
  return { row: row >= 0 ? row : null, col: stepIndex(h.steps, s.step) };
}
