/** Where and when: layers x steps of the near-zero result fraction. Clicking a cell selects layer and step. */
import { exact, pct } from '../format';
import { createHeatmap } from '../heatmap';
import { roleLabel, type State } from '../state';
import { heatmapGrid, stepIndex } from '../transforms';
import type { HeatmapResponse } from '../types';
import { type View, type ViewContext, Slot, fractionScale, section } from './common';

const RELEVANT: (keyof State)[] = ['selected', 'role', 'step', 'layer', 'sequential'];

export class WhereWhenView implements View {
  readonly el: HTMLElement;
  private slot = new Slot();

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
    if (!run) return this.slot.clear();
    void this.slot.load(
      () => this.ctx.api.heatmap(run, s.role),
      (h) => this.draw(s, h),
    );
  }

  private draw(s: State, h: HeatmapResponse): void {
    if (!h.layers.length || !h.steps.length) {
      this.slot.clear('No records for this role.');
      return;
    }
    const grid = heatmapGrid(h);
    const col = stepIndex(h.steps, s.step);
    const row = h.layers.indexOf(s.layer ?? '');
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
      selected: { row: row >= 0 ? row : null, col },
      emphasisRow: row >= 0 ? row : null,
      fileBase: [h.run, h.role],
      onCellClick: (r, c) => {
        this.ctx.store.set({ layer: h.layers[r], step: c === h.steps.length - 1 ? null : h.steps[c] });
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
  }
}
