/**
 * What the layer detail says about the step of its per-unit pair table: /units answers from the latest record with
 * unit detail at or before the step (ExplainerCallback keeps it every `unit_detail_every`-th recorded step and at
 * each fit's first), so the table can be from an earlier step than the layer's matrix, or be missing.
 */
import { el } from '../dom';

/** How often unit detail is kept, as the notes say it. */
const HOW_KEPT =
  'unit detail is kept at the first recorded step of each fit and every N-th recorded step after it ' +
  '(ExplainerCallback(unit_detail_every=N), 10 by default)';

/**
 * The note on the per-unit pairs of a layer whose record at the selection is at `layerStep`: null when the pairs
 * are from that step (`unitsStep` equal), a caption naming the earlier step they are from, or (`unitsStep` null:
 * no record with unit detail at or before it) what to do instead.
 */
export function unitDetailNote(layerStep: number, unitsStep: number | null): string | null {
  if (unitsStep === layerStep) return null;
  if (unitsStep === null) {
    return (
      `No per-unit pair table at or before step ${layerStep}: ${HOW_KEPT}. ` +
      'Pick a later step, or record with ExplainerCallback(unit_detail_every=1) to keep it at every recorded step.'
    );
  }
  return (
    `Per-unit pairs at step ${unitsStep}, the latest step with unit detail at or before step ${layerStep} ` +
    `(the pair matrix above is at step ${layerStep}): ${HOW_KEPT}.`
  );
}

/**
 * The note as an element, or null when there is nothing to say: a caption above the units x pairs grid, or the
 * empty state in its place (`unitsStep` null). `data-layer-step` / `data-units-step` carry the two steps.
 */
export function unitDetailBox(layerStep: number, unitsStep: number | null): HTMLElement | null {
  const text = unitDetailNote(layerStep, unitsStep);
  if (text === null) return null;
  const box = el('div', unitsStep === null ? 'mmx-note mmx-unit-detail mmx-unit-detail-empty' : 'mmx-note mmx-unit-detail', text);
  box.setAttribute('role', 'note');
  box.dataset.layerStep = String(layerStep);
  box.dataset.unitsStep = unitsStep === null ? '' : String(unitsStep);
  return box;
}
