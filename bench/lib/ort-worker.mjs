// One onnxruntime-web engine (its own wasm instance and thread count) in a worker thread. The main thread sends
// { id, op, args } and gets { id, result } or { id, error }; only one engine runs at a time (the caller awaits).
import { parentPort, workerData } from 'node:worker_threads';
import { createOrtLM } from './ort-lm.mjs';

const lm = await createOrtLM(workerData);
parentPort.on('message', async ({ id, op, args }) => {
  try {
    let result;
    if (op === 'logits') {
      const r = await lm.logits(args.ids);
      result = { ms: r.ms, logits: args.keep ? r.logits : undefined };
    } else if (op === 'generate') result = await lm.generate(args.prompt, args.maxNew);
    else if (op === 'release') result = await lm.release();
    else throw new Error(`unknown op ${op}`);
    parentPort.postMessage({ id, result });
  } catch (e) {
    parentPort.postMessage({ id, error: String(e?.stack ?? e) });
  }
});
parentPort.postMessage({ ready: true });
