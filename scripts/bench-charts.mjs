// The benchmark tables of bench/results.md drawn as SVG bar charts in docs/bench/ (plain SVG, no dependency).
// `npm run bench` calls it after writing results.md; `node scripts/bench-charts.mjs` redraws from the file as it is.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Which tables become charts: the heading that names the table, the file, the unit, what to split panels by. */
export const CHARTS = [
  { heading: /^Summary/, file: 'summary', unit: 'GFLOP/s, higher is better' },
  { heading: /^linear \(adapter off\)/, file: 'linear', unit: 'GFLOP/s, higher is better', split: 'k = n' },
  { heading: /^lora_linear, r = (\d+)/, file: 'lora-r$1', unit: 'GFLOP/s, higher is better', split: 'k = n' },
  { heading: /^What the adapter costs/, file: 'adapter-cost', unit: 'time over the same library’s plain linear, %' },
  { heading: /^Weight storage/, file: 'weight-storage', unit: 'GFLOP/s, higher is better', columns: /^m=/ },
  { heading: /^Loading/, file: 'load', unit: 'ms, lower is better', columns: /^ms$/ },
  { heading: /^f16 \/ bf16/, file: 'convert', unit: 'GB/s of 16-bit input, higher is better', columns: /^GB\/s$/ },
];

const clean = (s) => s.replace(/\*\*/g, '').replace(/`/g, '').trim();

/** The number a cell starts with (`**14.3** (1.30× best peer)` → 14.3, `-0.5 %` → -0.5); undefined for `—`, text. */
export function cellValue(cell) {
  const m = /^[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?/i.exec(clean(cell));
  return m ? Number(m[0]) : undefined;
}

/** The number as the table wrote it (`+1.0`, `9.59`), for the label on its bar. */
const cellText = (cell) => /^[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?/i.exec(clean(cell))?.[0];

/** Every markdown table under a `#…` heading: `{ heading, header: string[], rows: string[][] }`. */
export function parseTables(md) {
  const tables = [];
  let heading = '';
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const h = /^#+\s+(.*)$/.exec(lines[i]);
    if (h) heading = h[1].trim();
    if (!lines[i].startsWith('|') || !/^\|\s*-{3}/.test(lines[i + 1] ?? '')) continue;
    const split = (l) => l.replace(/^\||\|$/g, '').split('|').map((c) => c.trim());
    const header = split(lines[i]);
    const rows = [];
    for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(split(lines[i]));
    tables.push({ heading, header, rows });
  }
  return tables;
}

/**
 * A chart: panels (one per value of the split column) of groups (the value columns) of bars (one per row that
 * has a number there). Rows whose label starts with `peftjs` are drawn in the strong colours.
 */
export function chartOf(table, spec) {
  const cols = table.header.map((h, i) => ({ h: clean(h), i })).filter(({ h, i }) => i > 0 && h !== spec.split && (spec.columns ? spec.columns.test(h) : true));
  const valueCols = cols.filter(({ i }) => table.rows.some((r) => cellValue(r[i]) !== undefined));
  const splitAt = spec.split ? table.header.findIndex((h) => clean(h) === spec.split) : -1;
  const keys = splitAt < 0 ? [''] : [...new Set(table.rows.map((r) => clean(r[splitAt])))];
  const series = [...new Set(table.rows.map((r) => clean(r[0])))];
  const panels = keys.map((key) => ({
    title: splitAt < 0 ? '' : `${spec.split} = ${key}`,
    groups: valueCols.map(({ h, i }) => ({
      label: h,
      bars: table.rows
        .filter((r) => splitAt < 0 || clean(r[splitAt]) === key)
        .map((r) => ({ series: clean(r[0]), value: cellValue(r[i]), text: cellText(r[i]) }))
        .filter((b) => b.value !== undefined),
    })),
  }));
  return { title: table.heading, unit: spec.unit, series, panels };
}

const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const STRONG = ['#d1495b', '#edae49', '#8e3b46'];
const SOFT = ['#00798c', '#30638e', '#66a182', '#8d96a3', '#003d5b', '#b5838d'];

/** The SVG text of a chart; bar lengths are proportional to the values, from a zero line. */
export function renderSvg(chart) {
  let strong = 0;
  let soft = 0;
  const colour = new Map(chart.series.map((s) => [s, s.startsWith('peftjs') ? STRONG[strong++ % STRONG.length] : SOFT[soft++ % SOFT.length]]));
  const head = (width, height) => [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="20" font-size="14" font-weight="600">${esc(chart.title)}</text>`,
    `<text x="12" y="38" fill="#555">${esc(chart.unit)}</text>`,
  ];
  const barRect = (b, label, x, y, w, h) =>
    `<rect class="bar" data-series="${esc(b.series)}" data-value="${b.value}" x="${x.toFixed(2)}" y="${y.toFixed(2)}" width="${w.toFixed(2)}" height="${h.toFixed(2)}" fill="${colour.get(b.series)}"><title>${esc(`${b.series}, ${label}: ${b.text}`)}</title></rect>`;
  const values = chart.panels.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.value)));
  const max = Math.max(0, ...values);
  const min = Math.min(0, ...values);

  // One value per row (a single column, no panels): horizontal bars, labelled on the left.
  if (chart.panels.length === 1 && chart.panels[0].groups.length === 1) {
    const g = chart.panels[0].groups[0];
    const labelW = 7 * Math.max(...g.bars.map((b) => b.series.length));
    const plotW = 360;
    const width = 24 + labelW + plotW + 60;
    const height = 56 + 24 * g.bars.length + 10;
    const scale = plotW / (max - min || 1);
    const zeroX = 12 + labelW + 12 - min * scale;
    const out = head(width, height);
    for (const [i, b] of g.bars.entries()) {
      const y = 52 + 24 * i;
      const w = Math.abs(b.value) * scale;
      const x = b.value >= 0 ? zeroX : zeroX - w;
      out.push(`<text x="${12 + labelW}" y="${y + 12}" text-anchor="end"${b.series.startsWith('peftjs') ? ' font-weight="600"' : ''}>${esc(b.series)}</text>`);
      out.push(barRect(b, g.label, x, y, w, 16));
      out.push(`<text x="${(b.value >= 0 ? x + w + 4 : x - 4).toFixed(2)}" y="${y + 12}"${b.value >= 0 ? '' : ' text-anchor="end"'}>${esc(b.text)}</text>`);
    }
    out.push(`<line x1="${zeroX}" x2="${zeroX}" y1="48" y2="${height - 6}" stroke="#333"/>`);
    out.push('</svg>');
    return `${out.join('\n')}\n`;
  }

  // Grouped vertical bars: a group per value column, a bar per row; panels side by side.
  const bar = 24;
  const gap = 16;
  const plotH = 200;
  const scale = plotH / (max - min || 1);
  const zeroY = 64 + max * scale;
  const groupW = (g) => Math.max(g.bars.length * bar, 6.5 * g.label.length);
  const panelW = chart.panels.map((p) => p.groups.reduce((w, g) => w + groupW(g) + gap, gap));
  const width = Math.max(520, 24 + panelW.reduce((a, b) => a + b + 20, 0));
  const axisY = 64 + plotH + 26;
  const legendY = axisY + 32;
  const height = legendY + 20 * Math.ceil(chart.series.length / 2) + 6;
  const out = head(width, height);
  let x0 = 12;
  for (const [pi, p] of chart.panels.entries()) {
    if (p.title) out.push(`<text x="${x0 + panelW[pi] / 2}" y="56" text-anchor="middle" font-weight="600">${esc(p.title)}</text>`);
    out.push(`<line x1="${x0}" x2="${x0 + panelW[pi]}" y1="${zeroY}" y2="${zeroY}" stroke="#333"/>`);
    let x = x0 + gap;
    for (const g of p.groups) {
      const gw = groupW(g);
      let bx = x + (gw - g.bars.length * bar) / 2;
      for (const b of g.bars) {
        const h = Math.abs(b.value) * scale;
        const y = b.value >= 0 ? zeroY - h : zeroY;
        out.push(barRect(b, g.label, bx + 1, y, bar - 2, h));
        const ty = b.value >= 0 ? y - 3 : y + h + 10;
        out.push(`<text x="${bx + bar / 2}" y="${ty.toFixed(2)}" text-anchor="middle" font-size="9" fill="#333">${esc(b.text)}</text>`);
        bx += bar;
      }
      out.push(`<text x="${x + gw / 2}" y="${axisY}" text-anchor="middle">${esc(g.label)}</text>`);
      x += gw + gap;
    }
    x0 += panelW[pi] + 20;
  }
  for (const [i, s] of chart.series.entries()) {
    const lx = 12 + (i % 2) * (width / 2);
    const ly = legendY + 20 * Math.floor(i / 2);
    out.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${colour.get(s)}"/>`);
    out.push(`<text x="${lx + 16}" y="${ly}"${s.startsWith('peftjs') ? ' font-weight="600"' : ''}>${esc(s)}</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Draws every chart of CHARTS found in `md` into `outDir`; returns the files written. */
export function writeCharts(md, outDir) {
  mkdirSync(outDir, { recursive: true });
  const written = [];
  for (const table of parseTables(md)) {
    const spec = CHARTS.find((c) => c.heading.test(table.heading));
    if (!spec) continue;
    const file = `${table.heading.replace(spec.heading, spec.file).split(/[:\s]/)[0]}.svg`;
    writeFileSync(`${outDir}/${file}`, renderSvg(chartOf(table, spec)));
    written.push(file);
  }
  return written;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = new URL('../', import.meta.url);
  const md = readFileSync(new URL('bench/results.md', root), 'utf8');
  const files = writeCharts(md, fileURLToPath(new URL('docs/bench', root)));
  console.error(`wrote docs/bench/: ${files.join(', ')}`);
}
