// An ESM consumer of the packed peftjs: type-checked (never run) by test/package/package.test.ts.
import { init, IoError, Linear, LoRAContainer, Module, Tensor, type AdapterReport, type IoCode } from 'peftjs';
import * as standalone from 'peftjs/standalone';
import { WorkerLM, ModelError, type StreamChunk } from 'peftjs/worker';

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
  const lm = await WorkerLM.load('model', { weightDtype: 'bf16', adapters: [{ name: 'a', source: { 'adapter_config.json': new Uint8Array(2) } }] });
  await lm.setAdapterEnabled('a', false);
  let chunk: StreamChunk | undefined;
  for await (chunk of lm.stream('def ', { maxNewTokens: 4, signal: AbortSignal.timeout(1000) }));
  const logits: Float32Array = await lm.logits([1, 2]);
  const bad = new ModelError('bad_option', 'x').code === 'bad_option';
  await lm.terminate();
  return (y?.shape[0] ?? 0) + report.totals.pairs + code.length + standalone.VERSION.length + logits.length + (chunk?.token ?? 0) + Number(bad);
}
