/**
 * The card around a heatmap: the section element, its header (run-colour swatch, title, subtitle, the caller's
 * extra controls, PNG and CSV buttons) and the body the plot is drawn in, sized to the heatmap so that small
 * multiples sit side by side.
 */
import type { HeatmapOptions } from './options';

export interface Card {
  root: HTMLElement;
  /** Where the header's buttons go. */
  actions: HTMLElement;
  /** The plot area: axes SVG and canvases, `width` x `height` CSS px. */
  body: HTMLElement;
}

function span(cls: string, text: string): HTMLElement {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text;
  return s;
}

export function createCard(opts: HeatmapOptions, width: number, height: number): Card {
  const root = document.createElement('section');
  root.className = 'mmx-card mmx-heatmap';
  root.dataset.heatmap = opts.id;
  const head = document.createElement('div');
  head.className = 'mmx-card-head';
  if (opts.accent) {
    const sw = span('mmx-swatch', '');
    sw.style.background = opts.accent;
    head.appendChild(sw);
  }
  const h = document.createElement('h3');
  h.textContent = opts.title;
  head.appendChild(h);
  if (opts.subtitle) head.appendChild(span('mmx-sub', opts.subtitle));
  const actions = document.createElement('div');
  actions.className = 'mmx-actions';
  for (const n of opts.headerExtras ?? []) actions.appendChild(n);
  head.appendChild(actions);

  const body = document.createElement('div');
  body.className = 'mmx-hm-body';
  body.style.width = `${width}px`;
  body.style.height = `${height}px`;
  // The card is as wide as its heatmap (legends and header wrap), so small multiples sit side by side.
  root.style.width = `${Math.max(width, 340) + 22}px`;
  root.append(head, body);
  return { root, actions, body };
}

/** A small header button. */
export function button(text: string, title: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'mmx-btn mmx-btn-small';
  b.textContent = text;
  b.title = title;
  b.addEventListener('click', onClick);
  return b;
}
