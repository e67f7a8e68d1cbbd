/** The async region a view draws into: only the latest load's result, a loading indicator, errors with retry. */
import { el, errorBox } from '../dom';

/**
 * A region that shows the result of the latest load only (stale answers are dropped), a loading
 * indicator when a load takes a while, and an error box with retry when it fails.
 */
export class Slot {
  readonly el: HTMLElement;
  private token = 0;

  constructor(cls = 'mmx-slot') {
    this.el = el('div', cls);
  }

  async load<T>(load: () => Promise<T>, draw: (v: T) => void): Promise<void> {
    const my = ++this.token;
    const timer = setTimeout(() => {
      if (my === this.token) this.el.classList.add('mmx-loading');
    }, 120);
    try {
      const v = await load();
      if (my !== this.token) return;
      this.el.textContent = '';
      draw(v);
    } catch (e) {
      if (my !== this.token) return;
      this.el.textContent = '';
      this.el.appendChild(errorBox(e, () => void this.load(load, draw)));
      console.error(e);
    } finally {
      clearTimeout(timer);
      if (my === this.token) this.el.classList.remove('mmx-loading');
    }
  }

  clear(message?: string): void {
    this.token++;
    this.el.textContent = '';
    this.el.classList.remove('mmx-loading');
    if (message) this.el.appendChild(el('p', 'mmx-muted', message));
  }
}
