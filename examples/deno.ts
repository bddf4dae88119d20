// Deno example: the same package, no bundler, no npm install step beyond the build:
//   npm run build && deno run --allow-read examples/deno.ts
import { init, LoRAContainer } from '../dist/index.js';

await init();
const adapter = await LoRAContainer.fromPEFT(new URL('../test/fixtures/peft-real/smollm135m-qv/', import.meta.url).pathname);
console.log(adapter.report.toString());
