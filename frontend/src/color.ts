/** Parses the colour strings d3's interpolators produce ("rgb(r, g, b)" or "#rrggbb") into [r, g, b]. */
export function color(css: string): [number, number, number] {
  const s = css.trim();
  if (s[0] === '#') {
    const hex = s.length === 4 ? s.slice(1).split('').map((c) => c + c).join('') : s.slice(1, 7);
    const n = parseInt(hex, 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  const m = s.match(/rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)/);
  if (m) return [Math.round(+m[1]), Math.round(+m[2]), Math.round(+m[3])];
  return [0, 0, 0];
}
