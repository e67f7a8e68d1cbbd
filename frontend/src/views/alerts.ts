/**
 * Alerts panel: the primary run's alerts at each layer's latest record (`./alerts?run=R`), in the backend's
 * ranking (worst first), each with its severity, layer, role, first step and message. Clicking one selects its
 * layer, role and first step in every view.
 */
import { el } from '../dom';
import { exact, pct } from '../format';
import { roleLabel, type State } from '../state';
import type { Alert, AlertsResponse } from '../types';
import { Slot } from './slot';
import type { View, ViewContext } from './view';

/** A severity in [0, 1] as a small bar (its value in the title and as text for screen readers). */
export function severityBar(severity: number): HTMLElement {
  const sev = el('span', 'mmx-severity');
  sev.style.setProperty('--sev', String(Math.max(0, Math.min(1, severity))));
  sev.title = `severity ${exact(severity)}`;
  sev.setAttribute('role', 'img');
  sev.setAttribute('aria-label', `severity ${pct(severity, 0)}`);
  return sev;
}

/**
 * The patch that shows an alert at its first step (null: the latest step): its origin layer and role, or, for an
 * origin without records of its own (an Activation layer), where the backend says it shows (`open`: the input
 * features of the layer it feeds).
 */
export function alertSelection(s: State, a: Alert): Partial<State> {
  const target = a.open ?? { layer: a.layer, role: a.role };
  const last = s.steps.length ? s.steps[s.steps.length - 1] : null;
  const latest = target.role === s.role && last !== null && a.first_step >= last;
  return { layer: target.layer, role: target.role, step: latest ? null : a.first_step };
}

/** Where an alert opens, in words: its layer, or its layer as seen in the layer it feeds. */
function alertPlace(a: Alert): string {
  const target = a.open ?? { layer: a.layer, role: a.role };
  return target.layer === a.layer ? `${a.layer} (${roleLabel(target.role)})` : `${a.layer}, seen in ${target.layer}’s ${roleLabel(target.role)}`;
}

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
      () => this.ctx.data.alerts(s),
      (r) => this.draw(r),
    );
  }

  private draw(r: AlertsResponse): void {
    const box = el('section', 'mmx-alerts');
    box.id = 'mmx-alerts';
    box.dataset.view = 'alerts';
    box.dataset.count = String(r.alerts.length);
    const head = el('div', 'mmx-alerts-head');
    head.appendChild(
      el('h2', undefined, r.alerts.length ? `${r.alerts.length} alert${r.alerts.length > 1 ? 's' : ''} for ${r.run}, where problems start first, then worst first` : `No alerts for ${r.run}: nothing looks wrong.`),
    );
    head.appendChild(el('span', 'mmx-sub', 'at each layer’s latest record · click an alert to show its layer from the step it began'));
    box.appendChild(head);
    if (r.alerts.length) {
      const list = el('ol', 'mmx-alert-list');
      r.alerts.forEach((a, i) => list.appendChild(this.item(a, i)));
      box.appendChild(list);
    } else box.classList.add('mmx-alerts-none');
    this.slot.el.appendChild(box);
  }

  private item(a: Alert, rank: number): HTMLElement {
    const li = el('li', 'mmx-alert mmx-clickable');
    li.dataset.rank = String(rank);
    li.dataset.kind = a.kind;
    li.tabIndex = 0;
    li.title = `Show ${alertPlace(a)} at step ${a.first_step}`;
    if (a.open) li.dataset.open = `${a.open.layer}:${a.open.role}`;
    li.append(
      severityBar(a.severity),
      el('span', 'mmx-alert-sev', pct(a.severity, 0)),
      el('span', 'mmx-alert-layer', a.layer),
      el('span', 'mmx-alert-role', roleLabel(a.role)),
      // (Always a cell, empty without seen_in: each item fills the list's grid row, column for column.)
      el('span', 'mmx-alert-seen', a.seen_in ? `seen in ${a.seen_in}` : ''),
      el('span', 'mmx-alert-step', `since step ${a.first_step}`),
      el('span', 'mmx-alert-text', a.message),
    );
    const select = () => {
      this.ctx.select(alertSelection(this.ctx.state(), a));
      document.getElementById('mmx-layer')?.scrollIntoView?.({ behavior: 'smooth', block: 'start' });
    };
    li.addEventListener('click', select);
    li.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        select();
      }
    });
    return li;
  }
}
