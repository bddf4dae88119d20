import type { Backend } from '../backends/backend.js';
import { createBackend } from '../backends/index.js';
import { LoRAContainer } from '../adapter/container.js';
import { setLoRAEnabled } from '../lora/set-enabled.js';
import { CausalLM, type GenerateOptions } from '../models/causal-lm.js';
import { progressReporter } from './progress.js';

export interface GenerateCliOptions {
  model: string;
  adapter?: string;
  prompt: string;
  lora: 'on' | 'off' | 'both';
  draft?: string;
  exitAfter?: number;
  backend: 'wasm' | 'webgpu' | 'js';
  maxNew: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/** Writes to stdout; a TTY also gets a live status after the cursor, erased before the next piece. */
class Terminal {
  private status = 0;
  constructor(
    private readonly out: NodeJS.WriteStream = process.stdout,
    private readonly err: NodeJS.WriteStream = process.stderr,
  ) {}
  get tty(): boolean {
    return !!this.out.isTTY;
  }
  write(text: string): void {
    this.clear();
    this.out.write(text);
  }
  live(s: string): void {
    if (!this.tty) return;
    this.clear();
    this.out.write(`\x1b[2m${s}\x1b[0m`);
    this.status = s.length;
  }
  clear(): void {
    if (this.status) this.out.write(`\x1b[${this.status}D\x1b[K`);
    this.status = 0;
  }
  note(s: string): void {
    this.clear();
    this.err.write(`${s}\n`);
  }
}

/** `peftjs generate`: loads the model (+ adapter, + drafter), streams the continuation with a live tokens/s line. */
export async function generateCommand(o: GenerateCliOptions, term = new Terminal()): Promise<void> {
  const backend: Backend = o.backend === 'webgpu' ? await createWebGPU() : await createBackend(o.backend);
  const lm = await CausalLM.load(o.model, { backend, weightDtype: 'bf16', onProgress: progressReporter('model') });
  let adapter: LoRAContainer | undefined;
  if (o.adapter) {
    adapter = await LoRAContainer.load(o.adapter, { name: 'adapter', onProgress: progressReporter('adapter') });
    adapter.apply(lm);
  } else if (o.lora !== 'off') {
    o.lora = 'off';
  }
  let draftName: string | undefined;
  if (o.draft) {
    const d = await LoRAContainer.load(o.draft, { name: 'draft', onProgress: progressReporter('drafter') });
    d.apply(lm);
    setLoRAEnabled(lm, false, { adapter: 'draft' });
    draftName = 'draft';
  }
  term.note(`${lm} · ${backend.name}${adapter ? ` · adapter ${o.adapter}` : ''}${draftName ? ` · drafter ${o.draft} (exit after ${o.exitAfter ?? lm.config.layers} layers)` : ''}`);
  const runs: ('on' | 'off')[] = o.lora === 'both' ? ['off', 'on'] : [o.lora];
  for (const mode of runs) {
    if (adapter) adapter.enabled = mode === 'on';
    if (runs.length > 1 || adapter) term.note(`\n── LoRA ${mode} ──`);
    const opts: GenerateOptions = { maxNewTokens: o.maxNew, temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed };
    if (draftName) opts.draft = { adapter: draftName, exitAfterLayers: o.exitAfter };
    term.write(o.prompt);
    const stream = lm.stream(o.prompt, opts);
    let last;
    for (;;) {
      const r = await stream.next();
      if (r.done) {
        last = r.value;
        break;
      }
      term.write(r.value.text ?? '');
      const s = r.value.stats;
      term.live(`  ⟨${s.newTokens} tok · ${s.decodeTokensPerSecond.toFixed(0)} tok/s⟩`);
    }
    term.write('\n');
    const s = last.stats;
    const spec = s.speculative;
    term.note(
      `${s.newTokens} tokens · prefill ${s.prefillTokensPerSecond.toFixed(0)} tok/s · decode ${s.decodeTokensPerSecond.toFixed(0)} tok/s` +
        (spec ? ` · speculative: acceptance ${(spec.acceptanceRate * 100).toFixed(0)} %, ${spec.tokensPerRound.toFixed(2)} tokens per verification` : '') +
        // A fresh process runs its first few hundred tokens on code V8 is still optimising (docs/targets.md).
        (mode === runs[0] && backend.name === 'wasm' ? ' (a fresh process: the first generations run slower while V8 compiles; `peftjs bench-model` times warm runs)' : ''),
    );
  }
  lm.dispose();
}

async function createWebGPU(): Promise<Backend> {
  // Node has no navigator.gpu: the optional `webgpu` package (Dawn) provides one.
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return createBackend('webgpu');
  const mod = (await import('webgpu' as string).catch(() => undefined)) as { create?: (o: string[]) => unknown; globals?: object } | undefined;
  if (!mod?.create) throw new Error('--backend webgpu needs WebGPU: in Node install the `webgpu` package (npm i webgpu)');
  if (mod.globals) Object.assign(globalThis, mod.globals);
  return createBackend('webgpu', { gpu: mod.create([]) } as never);
}
