// Small SVG charts for the benchmark results (no dependencies): line charts of cost curves and
// bar charts of speedups, written next to the JSON results and linked from the README.

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** series: [{ name, points: [[x, y], ...] }]; x on a log2 axis. */
export function lineChart({ title, xLabel, yLabel, series, width = 720, height = 420 }) {
  const m = { l: 60, r: 220, t: 40, b: 50 };
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.log2(Math.min(...xs));
  const x1 = Math.log2(Math.max(...xs));
  const y1 = Math.max(...ys) * 1.05;
  const X = (x) => m.l + ((Math.log2(x) - x0) / (x1 - x0 || 1)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - (y / y1) * (height - m.t - m.b);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">\n`;
  svg += `<rect width="100%" height="100%" fill="white"/>\n<text x="${width / 2 - m.r / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>\n`;
  const step = y1 > 40 ? 10 : y1 > 16 ? 4 : y1 > 8 ? 2 : 1;
  for (let y = 0; y <= y1; y += step) {
    svg += `<line x1="${m.l}" x2="${width - m.r}" y1="${Y(y)}" y2="${Y(y)}" stroke="#ddd"/><text x="${m.l - 6}" y="${Y(y) + 4}" text-anchor="end">${y}</text>\n`;
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    svg += `<text x="${X(x)}" y="${height - m.b + 16}" text-anchor="middle">${x}</text>\n`;
  }
  svg += `<text x="${(m.l + width - m.r) / 2}" y="${height - 12}" text-anchor="middle">${esc(xLabel)}</text>\n`;
  svg += `<text transform="translate(16 ${(m.t + height - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>\n`;
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    svg += `<polyline fill="none" stroke="${c}" stroke-width="2"${dash} points="${s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>\n`;
    for (const p of s.points) svg += `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="3" fill="${c}"/>\n`;
    svg += `<line x1="${width - m.r + 12}" x2="${width - m.r + 36}" y1="${m.t + 18 * i}" y2="${m.t + 18 * i}" stroke="${c}" stroke-width="2"${dash}/><text x="${width - m.r + 42}" y="${m.t + 18 * i + 4}">${esc(s.name)}</text>\n`;
  });
  return svg + '</svg>\n';
}

/** bars: [{ label, value, group? }]; a reference line at 1. */
export function barChart({ title, yLabel, bars, width = 760, height = 420 }) {
  const m = { l: 60, r: 20, t: 40, b: 150 };
  const y1 = Math.max(1.2, ...bars.map((b) => b.value)) * 1.1;
  const bw = (width - m.l - m.r) / bars.length;
  const Y = (y) => height - m.b - (y / y1) * (height - m.t - m.b);
  const groups = [...new Set(bars.map((b) => b.group ?? ''))];
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">\n`;
  svg += `<rect width="100%" height="100%" fill="white"/>\n<text x="${width / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>\n`;
  const step = y1 > 8 ? 2 : y1 > 3 ? 1 : 0.5;
  for (let y = 0; y <= y1; y += step) {
    svg += `<line x1="${m.l}" x2="${width - m.r}" y1="${Y(y)}" y2="${Y(y)}" stroke="#eee"/><text x="${m.l - 6}" y="${Y(y) + 4}" text-anchor="end">${y}×</text>\n`;
  }
  bars.forEach((b, i) => {
    const c = COLORS[groups.indexOf(b.group ?? '') % COLORS.length];
    const x = m.l + i * bw + bw * 0.15;
    svg += `<rect x="${x.toFixed(1)}" y="${Y(b.value).toFixed(1)}" width="${(bw * 0.7).toFixed(1)}" height="${(Y(0) - Y(b.value)).toFixed(1)}" fill="${c}"/>\n`;
    svg += `<text x="${(x + bw * 0.35).toFixed(1)}" y="${(Y(b.value) - 4).toFixed(1)}" text-anchor="middle">${b.value.toFixed(2)}</text>\n`;
    svg += `<text transform="translate(${(x + bw * 0.35).toFixed(1)} ${Y(0) + 10}) rotate(50)" font-size="11">${esc(b.label)}</text>\n`;
  });
  svg += `<line x1="${m.l}" x2="${width - m.r}" y1="${Y(1)}" y2="${Y(1)}" stroke="black" stroke-dasharray="4 3"/>\n`;
  svg += `<text transform="translate(16 ${(m.t + height - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>\n`;
  return svg + '</svg>\n';
}
