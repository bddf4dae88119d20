// The worker script peftjs ships (dist/worker-script.js, dist/worker-script.browser.js): a worker that serves
// `WorkerLM` requests. The build points `../index.js` at the library bundle beside it (tsup.config.ts).
import { serveLM } from '../index.js';

void serveLM();
