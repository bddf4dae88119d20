// A peer from lib/peers.mjs run with T threads in a worker thread of its own (its own wasm instance, so its
// thread count never touches the one-thread peer in the main thread). The main thread sends { id, op, args } and
// gets { id, result } or { id, error }; one call at a time (the caller awaits).
import { parentPort, workerData } from 'node:worker_threads';
import { ortPeer, tfjsPeer } from './peers.mjs';

const peer = workerData.peer === 'ort' ? await ortPeer({ threads: workerData.threads }) : await tfjsPeer({ threads: workerData.threads });
const preps = new Map();
let next = 0;
parentPort.on('message', async ({ id, op, args }) => {
  try {
    let result;
    if (op === 'prepare') {
      const h = next++;
      preps.set(h, await peer.prepare(args));
      result = h;
    } else if (op === 'run') {
      const y = await preps.get(args.h).run(args.x, args.m, true);
      result = y instanceof Float32Array ? y : Float32Array.from(y);
    } else if (op === 'dispose') {
      await preps.get(args.h).dispose();
      preps.delete(args.h);
    } else throw new Error(`unknown op ${op}`);
    parentPort.postMessage({ id, result });
  } catch (e) {
    parentPort.postMessage({ id, error: String(e?.stack ?? e) });
  }
});
parentPort.postMessage({ ready: true, label: peer.label, detail: peer.detail });
