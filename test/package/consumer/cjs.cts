// A CommonJS consumer of the packed peftjs (resolves the `require` condition → dist/index.d.cts).
import peft = require('peftjs');
import type { AdapterReport } from 'peftjs';
import worker = require('peftjs/worker');

export async function run(): Promise<number> {
  await peft.init();
  const t = peft.Tensor.from(new Float32Array(4), [2, 2], 'f32');
  const y = new peft.Module().get('a.b', peft.Linear)?.forward(t);
  t[Symbol.dispose]();
  const report: AdapterReport = (await peft.LoRAContainer.fromPEFT('adapter')).report;
  const lm = await worker.WorkerLM.load('model', { adapters: [{ source: 'adapter' }] });
  const r = await lm.generate('def ', { draft: { adapter: 'a', exitAfterLayers: 2 } });
  return (y?.shape[0] ?? 0) + report.totals.pairs + r.tokens.length;
}
