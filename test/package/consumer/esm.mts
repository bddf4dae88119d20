// An ESM consumer of the packed peftjs: type-checked (never run) by test/package/package.test.ts.
import { init, IoError, Linear, LoRAContainer, Module, Tensor, type AdapterReport, type IoCode } from 'peftjs';
import * as standalone from 'peftjs/standalone';

export async function run(): Promise<number> {
  await init();
  const t = Tensor.from(new Float32Array(4), [2, 2], 'f32');
  {
    // `using` needs Disposable and Symbol.dispose, which the d.ts brings along for lib es2022.
    using scoped = Tensor.from(new Float32Array(2), [1, 2], 'f32');
    void scoped.shape;
  }
  // Module.get with a class: forward is callable with no cast.
  const y = new Module().get('a.b', Linear)?.forward(t);
  t[Symbol.dispose]();
  const report: AdapterReport = (await LoRAContainer.fromPEFT('adapter')).report;
  const code: IoCode = new IoError('not_found', 'missing').code;
  return (y?.shape[0] ?? 0) + report.totals.pairs + code.length + standalone.VERSION.length;
}
