/**
 * Alerts of the primary run, worst first, when the backend serves them (`./alerts?run=R`; nothing is shown on
 * 404). Clicking an alert selects its layer and role.
 */
import type { Alert } from '../api';
import { exact } from '../format';
import { roleLabel, type State } from '../state';
import { type View, type ViewContext, Slot, el } from './common';

export class AlertsView implements View {
  readonly el: HTMLElement;
  private slot = new Slot('mmx-slot mmx-alerts-slot');

  constructor(private ctx: ViewContext) {
    this.el = this.slot.el;
  }

  update(s: State, changed: Set<keyof State> | 'all'): void {
    if (changed !== 'all' && !changed.has('selected') && !changed.has('runs')) return;
    const run = s.selected[0];
    if (!run) return this.slot.clear();
    void this.slot.load(
      () => this.ctx.api.alerts(run).catch(() => null), // alerts are optional: never an error box
      (alerts) => this.draw(run, alerts),
    );
  }

  private draw(run: string, alerts: Alert[] | null): void {
    if (!alerts) return;
    const box = el('section', 'mmx-alerts');
    box.dataset.view = 'alerts';
    box.setAttribute('role', 'status');
    const head = el('h2', undefined, alerts.length ? `Alerts for ${run}, worst first` : `No alerts for ${run}: nothing looks wrong.`);
    box.appendChild(head);
    const list = el('ol');
    for (const a of alerts.slice(0, 12)) {
      const li = el('li');
      const sev = el('span', 'mmx-severity');
      sev.style.setProperty('--sev', String(Math.max(0, Math.min(1, a.severity))));
      sev.title = `severity ${exact(a.severity)}`;
      const msg = el('span', 'mmx-alert-text', a.message);
      const where = el('span', 'mmx-sub', [a.layer, a.role ? roleLabel(a.role) : '', a.firstStep !== null ? `since step ${a.firstStep}` : ''].filter(Boolean).join(' · '));
      li.append(sev, msg, where);
      if (a.layer) {
        li.classList.add('mmx-clickable');
        li.title = 'Show this layer';
        li.addEventListener('click', () => {
          const patch: Partial<State> = { layer: a.layer };
          if (a.role) patch.role = a.role;
          this.ctx.store.set(patch);
          document.getElementById('mmx-layer')?.scrollIntoView?.({ behavior: 'smooth', block: 'start' });
        });
      }
      list.appendChild(li);
    }
    if (alerts.length) box.appendChild(list);
    this.slot.el.appendChild(box);
  }
}
