/**
 * What a heatmap reports about its own drawing, for the browser tests and anyone curious: render and first-frame
 * times, size and geometry as data attributes on its card, a `performance.measure`, and a document event that
 * `onHeatmapRendered` listens to.
 */
import type { Frame } from './frame';

const RENDERED_EVENT = 'mmx-heatmap-rendered';

/** Records a heatmap built from `t0` (performance.now() ms) until now; returns the render time in ms. */
export function reportRendered(id: string, root: HTMLElement, f: Frame, rows: number, cols: number, t0: number): number {
  const t1 = performance.now();
  const ms = t1 - t0;
  const l = f.layout;
  root.dataset.renderMs = ms.toFixed(2);
  root.dataset.rows = String(rows);
  root.dataset.cols = String(cols);
  root.dataset.layout = JSON.stringify({
    left: f.left,
    top: f.top,
    cellW: l.cellW,
    cellH: l.cellH,
    groupX: l.groupX,
    groupStart: l.groupStart,
    groups: l.groups,
  });
  try {
    performance.measure(`mmx:heatmap:${id}`, { start: t0, end: t1 });
  } catch {
    /* older browsers: no measure options */
  }
  requestAnimationFrame(() => {
    root.dataset.frameMs = (performance.now() - t0).toFixed(2);
  });
  document.dispatchEvent(new CustomEvent(RENDERED_EVENT, { detail: { id, ms } }));
  return ms;
}

/** Calls `fn(id, ms)` after every heatmap is built; returns the unsubscribe function. */
export function onHeatmapRendered(fn: (id: string, ms: number) => void): () => void {
  const h = (e: Event) => {
    const d = (e as CustomEvent<{ id: string; ms: number }>).detail;
    fn(d.id, d.ms);
  };
  document.addEventListener(RENDERED_EVENT, h);
  return () => document.removeEventListener(RENDERED_EVENT, h);
}
