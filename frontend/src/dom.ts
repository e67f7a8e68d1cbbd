/** DOM building blocks shared by the app and the views: elements with text, view sections, the error box. */
import { ApiError } from './api';

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function section(id: string, title: string, description: string): { root: HTMLElement; head: HTMLElement; body: HTMLElement } {
  const root = el('section', 'mmx-section');
  root.id = `mmx-${id}`;
  root.dataset.view = id;
  const head = el('div', 'mmx-section-head');
  head.appendChild(el('h2', undefined, title));
  const desc = el('p', 'mmx-desc', description);
  const body = el('div', 'mmx-section-body');
  root.append(head, desc, body);
  return { root, head, body };
}

export function errorBox(err: unknown, retry?: () => void): HTMLElement {
  const box = el('div', 'mmx-error');
  box.setAttribute('role', 'alert');
  const status = err instanceof ApiError ? err.status : 0;
  const title = status === 404 ? 'Not found' : status === 400 ? 'Bad request' : 'Could not load data';
  box.appendChild(el('strong', undefined, title));
  box.appendChild(el('span', undefined, ` ${err instanceof Error ? err.message : String(err)}`));
  if (retry) {
    const b = el('button', 'mmx-btn mmx-btn-small', 'Retry');
    b.type = 'button';
    b.addEventListener('click', retry);
    box.appendChild(b);
  }
  return box;
}
