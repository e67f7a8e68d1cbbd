// @vitest-environment jsdom
/**
 * The note on the layer detail's per-unit pair table (views/unitdetail.ts): nothing when /units is from the
 * layer's step, a caption naming the earlier step it is from, an empty state saying what to do when there is none.
 */
import { describe, expect, it } from 'vitest';
import { unitDetailBox, unitDetailNote } from '../src/views/unitdetail';

describe('unit detail note', () => {
  it('says nothing when the per-unit pairs are from the layer step', () => {
    expect(unitDetailNote(40, 40)).toBeNull();
    expect(unitDetailNote(0, 0)).toBeNull();
    expect(unitDetailBox(40, 40)).toBeNull();
  });

  it('names the earlier step the per-unit pairs are from, the layer step and how to keep more', () => {
    const text = unitDetailNote(47, 40)!;
    expect(text).toMatch(/^Per-unit pairs at step 40, the latest step with unit detail at or before step 47 /);
    expect(text).toContain('the pair matrix above is at step 47');
    expect(text).toContain('ExplainerCallback(unit_detail_every=N)');
    // Step 0 is a step like any other (not "missing").
    expect(unitDetailNote(5, 0)).toMatch(/^Per-unit pairs at step 0, the latest step with unit detail at or before step 5 /);
  });

  it('says what to do when no record with unit detail is at or before the step', () => {
    const text = unitDetailNote(3, null)!;
    expect(text).toMatch(/^No per-unit pair table at or before step 3: unit detail is kept /);
    expect(text).toContain('Pick a later step, or record with ExplainerCallback(unit_detail_every=1)');
  });

  it('builds a caption box, or an empty-state box in place of the grid, carrying both steps', () => {
    const caption = unitDetailBox(47, 40)!;
    expect(caption.getAttribute('role')).toBe('note');
    expect(caption.classList.contains('mmx-unit-detail')).toBe(true);
    expect(caption.classList.contains('mmx-unit-detail-empty')).toBe(false);
    expect([caption.dataset.layerStep, caption.dataset.unitsStep]).toEqual(['47', '40']);
    expect(caption.textContent).toBe(unitDetailNote(47, 40));
    const empty = unitDetailBox(3, null)!;
    expect(empty.classList.contains('mmx-unit-detail-empty')).toBe(true);
    expect([empty.dataset.layerStep, empty.dataset.unitsStep]).toEqual(['3', '']);
    expect(empty.textContent).toBe(unitDetailNote(3, null));
  });
});
