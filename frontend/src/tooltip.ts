/** One floating tooltip for the whole tab. Content is set with textContent only. */

export interface TooltipRow {
  label: string;
  value: string;
}
export interface TooltipContent {
  title: string;
  subtitle?: string;
  rows: TooltipRow[];
}

let el: HTMLDivElement | null = null;

function ensure(): HTMLDivElement {
  if (el && el.isConnected) return el;
  el = document.createElement('div');
  el.className = 'mmx-tooltip';
  el.setAttribute('role', 'tooltip');
  el.hidden = true;
  document.body.appendChild(el);
  return el;
}

export function showTooltip(content: TooltipContent, clientX: number, clientY: number): void {
  const t = ensure();
  t.textContent = '';
  const title = document.createElement('div');
  title.className = 'mmx-tooltip-title';
  title.textContent = content.title;
  t.appendChild(title);
  if (content.subtitle) {
    const sub = document.createElement('div');
    sub.className = 'mmx-tooltip-sub';
    sub.textContent = content.subtitle;
    t.appendChild(sub);
  }
  const table = document.createElement('table');
  for (const row of content.rows) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.textContent = row.label;
    const td = document.createElement('td');
    td.textContent = row.value;
    td.dataset.label = row.label;
    tr.append(th, td);
    table.appendChild(tr);
  }
  t.appendChild(table);
  t.hidden = false;
  const pad = 14;
  const w = t.offsetWidth;
  const h = t.offsetHeight;
  const vw = document.documentElement.clientWidth || window.innerWidth;
  const vh = document.documentElement.clientHeight || window.innerHeight;
  let x = clientX + pad;
  let y = clientY + pad;
  if (x + w > vw - 4) x = Math.max(4, clientX - w - pad);
  if (y + h > vh - 4) y = Math.max(4, clientY - h - pad);
  t.style.left = `${x + window.scrollX}px`;
  t.style.top = `${y + window.scrollY}px`;
}

export function hideTooltip(): void {
  if (el) el.hidden = true;
}
