// A CommonJS consumer of the packed peftjs (resolves the `require` condition → dist/index.d.cts).
import peft = require('peftjs');
import type { AdapterReport } from 'peftjs';

export async function run(): Promise<number> {
  await peft.init();
  const t = peft.Tensor.from(new Float32Array(4), [2, 2], 'f32');
  const y = new peft.Module().get('a.b', peft.Linear)?.forward(t);
  t[Symbol.dispose]();
  const report: AdapterReport = (await peft.LoRAContainer.fromPEFT('adapter')).report;
  return (y?.shape[0] ?? 0) + report.totals.pairs;
}
