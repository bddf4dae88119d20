// One thread of bandwidth.mjs's bandwidthProbeThreads: its own read loops over its own buffer; on { passes, start }
// it waits for start[0] = 1 (every thread released at once), measures, and posts its GB/s.
import { parentPort, workerData } from 'node:worker_threads';
import { bandwidthProbe } from './bandwidth.mjs';

const probe = await bandwidthProbe(workerData.mib);
parentPort.on('message', ({ passes, start }) => {
  Atomics.wait(start, 0, 0);
  parentPort.postMessage(probe.measure(passes));
});
parentPort.postMessage('ready');
