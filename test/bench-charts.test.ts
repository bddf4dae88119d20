// scripts/bench-charts.mjs draws bench/results.md's tables as SVG: one bar per number in the table, its length
// proportional to the value (checked here against the table's own cells), every chart it is told about present.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';

const ROOT = new URL('../', import.meta.url).pathname;
interface Table {
  heading: string;
  header: string[];
  rows: string[][];
}
interface ChartsModule {
  parseTables(md: string): Table[];
  cellValue(cell: string): number | undefined;
  writeCharts(md: string, outDir: string): string[];
}
// A variable specifier: the script is plain JS with no declaration file.
const SCRIPT = `${ROOT}scripts/bench-charts.mjs`;
const charts = (await import(SCRIPT)) as ChartsModule;

test('cells: the number a cell starts with, bold or signed; none for a dash or words', () => {
  expect(charts.cellValue('**14.3** (1.30× best peer)')).toBe(14.3);
  expect(charts.cellValue('-0.5 %')).toBe(-0.5);
  expect(charts.cellValue('+1.0 %')).toBe(1);
  expect(charts.cellValue('—')).toBeUndefined();
  expect(charts.cellValue('no toggle')).toBeUndefined();
});

test('every chart of bench/results.md: one bar per number of its columns, lengths proportional to the values', () => {
  const md = readFileSync(`${ROOT}bench/results.md`, 'utf8');
  const out = mkdtempSync(join(tmpdir(), 'peftjs-charts-'));
  try {
    const files = charts.writeCharts(md, out);
    expect(files).toEqual(expect.arrayContaining(['summary.svg', 'linear.svg', 'lora-r16.svg', 'adapter-cost.svg', 'weight-storage.svg', 'load.svg', 'convert.svg']));
    expect(readdirSync(out).sort()).toEqual([...files].sort());
    const summary = readFileSync(join(out, 'summary.svg'), 'utf8');
    const table = charts.parseTables(md).find((t) => t.heading.startsWith('Summary'))!;
    const cells = table.rows.flatMap((r) => r.slice(1).map(charts.cellValue)).filter((v): v is number => v !== undefined);
    const bars = [...summary.matchAll(/data-value="([^"]+)"[^>]*height="([^"]+)"/g)].map((m) => ({ value: Number(m[1]), height: Number(m[2]) }));
    expect(bars.map((b) => b.value)).toEqual(
      // bars are drawn column by column; compare as multisets
      expect.arrayContaining(cells),
    );
    expect(bars).toHaveLength(cells.length);
    const ratio = bars[0]!.height / bars[0]!.value;
    for (const b of bars) expect(b.height).toBeCloseTo(b.value * ratio, 1);
    // The horizontal charts (one value per row) carry each row's value too.
    const convert = readFileSync(join(out, 'convert.svg'), 'utf8');
    const conv = charts.parseTables(md).find((t) => t.heading.startsWith('f16 / bf16'))!;
    const gbs = conv.header.findIndex((h) => h.trim() === 'GB/s');
    expect([...convert.matchAll(/data-value="([^"]+)"/g)].map((m) => Number(m[1]))).toEqual(conv.rows.map((r) => charts.cellValue(r[gbs]!)));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
