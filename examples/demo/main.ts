// The browser demo: pycoder (a 6-layer Llama trained on Python's standard library) loaded over HTTP, with its prose
// LoRA applied unmerged and switched on or off per token. Plain DOM; the library comes straight from src/.
//
// URL parameters (all optional): backend=wasm|webgpu, lora=on|off, max=<new tokens>, prompt=<text>.
import { CausalLM, LoRAContainer, PeftError, Tensor, createBackend, type Backend, type DecodeStats } from '../../src/index.js';
import './style.css';

const el = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  bar: el<HTMLProgressElement>('bar'),
  progress: el('progress'),
  progressText: el('progress-text'),
  form: el<HTMLFormElement>('form'),
  prompt: el<HTMLInputElement>('prompt'),
  go: el<HTMLButtonElement>('go'),
  lora: el<HTMLInputElement>('lora'),
  loraState: el('lora-state'),
  loraSays: el('lora-says'),
  max: el<HTMLInputElement>('max'),
  shownPrompt: el('shown-prompt'),
  gen: el('gen'),
  tps: el('tps'),
  count: el('count'),
  status: el('status'),
  webgpuReason: el('webgpu-reason'),
  radios: [...document.querySelectorAll<HTMLInputElement>('input[name=backend]')],
};
const radio = (name: BackendChoice) => ui.radios.find((r) => r.value === name)!;

type BackendChoice = 'wasm' | 'webgpu';
type State = 'loading' | 'ready' | 'generating' | 'done' | 'error';

/** The embedded model, served by Vite from models/ (its public dir): `<base>/pycoder/{base,adapter}/`. */
const MODEL = new URL(`${import.meta.env.BASE_URL}pycoder/`, location.href);
const MAX_NEW = 512;

interface Loaded {
  lm: CausalLM;
  prose: LoRAContainer;
  backend: Backend;
}
let current: Loaded | undefined;
let running: AbortController | undefined;
let wasm: Promise<Backend> | undefined;

function setState(state: State, status: string): void {
  document.body.dataset.state = state;
  ui.status.textContent = status;
  const busy = state === 'loading' || state === 'generating';
  ui.go.disabled = state === 'loading' || state === 'error';
  ui.go.textContent = state === 'generating' ? 'Stop' : 'Generate';
  for (const r of ui.radios) r.disabled = busy || (r.value === 'webgpu' && webgpuReason !== undefined);
}

/** A typed peftjs error as its code and one-line message (not `e.name`: a minifier renames classes); else its string. */
function describe(e: unknown): string {
  if (e instanceof PeftError) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

// ── WebGPU: offered only when navigator.gpu exists and the transformer ops the model needs actually run ─────────
let webgpuReason: string | undefined = 'checking WebGPU…';
let webgpuBackend: Backend | undefined;

function disableWebGPU(reason: string): void {
  webgpuReason = reason;
  radio('webgpu').disabled = true;
  ui.webgpuReason.textContent = reason;
  ui.webgpuReason.title = reason;
}

/** Creates the WebGPU backend and runs RMSNorm and SwiGLU on a 1×2 input against the values worked by hand. */
async function probeWebGPU(): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) return disableWebGPU('WebGPU unavailable: navigator.gpu is absent in this browser');
  let b: Backend | undefined;
  try {
    b = await createBackend('webgpu');
    const x = b.upload(Tensor.from(new Float32Array([3, 4]), [1, 2], 'f32'));
    const w = b.upload(Tensor.from(new Float32Array([1, 1]), [2], 'f32'));
    const y = b.rmsNorm(x, w, 0); // x / √((9 + 16)/2) = [0.8485, 1.1314]
    const s = b.swiglu(x, w); // 3/(1 + e⁻³), 4/(1 + e⁻⁴) = [2.8577, 3.9281]
    const [ny, ns] = [await y.read(), await s.read()];
    for (const t of [x, w, y, s]) t.dispose();
    const want = [3 / Math.sqrt(12.5), 4 / Math.sqrt(12.5), 3 / (1 + Math.exp(-3)), 4 / (1 + Math.exp(-4))];
    const got = [...ny, ...ns];
    if (want.some((v, i) => !(Math.abs(v - got[i]) <= 1e-5 * Math.abs(v)))) throw new Error(`ops returned [${got.map((v) => v.toFixed(4))}], expected [${want.map((v) => v.toFixed(4))}]`);
    webgpuBackend = b;
    webgpuReason = undefined;
    radio('webgpu').disabled = document.body.dataset.state === 'loading' || document.body.dataset.state === 'generating';
    ui.webgpuReason.textContent = '';
  } catch (e) {
    b?.dispose?.();
    disableWebGPU(`WebGPU unavailable: ${describe(e)}`);
  }
}

// ── loading ────────────────────────────────────────────────────────────────────────────────────────────────────
const mb = (n: number) => (n / 1e6).toFixed(1);

async function load(choice: BackendChoice): Promise<void> {
  running?.abort();
  current?.lm.dispose();
  current = undefined;
  setState('loading', `loading on ${choice}…`);
  ui.progress.hidden = false;
  ui.bar.removeAttribute('value'); // indeterminate until the first tensor arrives
  const t0 = performance.now();
  try {
    const backend = choice === 'webgpu' ? webgpuBackend! : await (wasm ??= createBackend('wasm'));
    const lm = await CausalLM.load(new URL('base/', MODEL).href, {
      backend,
      weightDtype: 'bf16',
      onProgress: (p) => {
        ui.bar.value = p.total > 0 ? p.loaded / p.total : 0;
        ui.progressText.textContent = `pycoder/base · ${mb(p.loaded)} / ${mb(p.total)} MB`;
      },
    });
    ui.progressText.textContent = 'pycoder/adapter (prose LoRA)…';
    const prose = await LoRAContainer.fromPEFT(new URL('adapter/', MODEL).href, { name: 'prose' });
    prose.apply(lm);
    prose.enabled = ui.lora.checked;
    current = { lm, prose, backend };
    ui.bar.value = 1;
    ui.progressText.textContent = `pycoder loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    const c = lm.config;
    setState('ready', `ready · ${backend.name} · Llama ${c.layers} layers, d ${c.hidden}, vocab ${c.vocab}, bf16 · LoRA r ${prose.spec.modules[0]?.rank ?? '?'}`);
  } catch (e) {
    if (choice === 'webgpu') {
      // The probe passed but the model did not load: say why, and go back to wasm.
      disableWebGPU(`WebGPU failed: ${describe(e)}`);
      radio('wasm').checked = true;
      return load('wasm');
    }
    setState('error', describe(e));
  }
}

// ── generating ─────────────────────────────────────────────────────────────────────────────────────────────────
/** Lets the browser paint; taken at most every 30 ms so decoding keeps its pace (decode time excludes it). */
const paint = () => new Promise<void>((r) => setTimeout(r, 0));

function showStats(s: DecodeStats): void {
  ui.count.textContent = String(s.newTokens);
  if (s.decodeTokensPerSecond > 0) ui.tps.textContent = s.decodeTokensPerSecond.toFixed(0);
}

async function generate(): Promise<void> {
  if (!current) return;
  const { lm, backend } = current;
  const prompt = ui.prompt.value;
  const maxNewTokens = Math.min(Math.max(Math.trunc(Number(ui.max.value)) || 1, 1), MAX_NEW);
  ui.max.value = String(maxNewTokens);
  const ctl = (running = new AbortController());
  ui.shownPrompt.textContent = prompt;
  ui.gen.textContent = '';
  ui.tps.textContent = '—';
  ui.count.textContent = '0';
  setState('generating', `generating on ${backend.name}…`);
  let shown = '';
  let last = performance.now();
  try {
    const it = lm.stream(prompt, { maxNewTokens, signal: ctl.signal });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        // The last characters can arrive only with the final flush (a byte sequence completed at the end).
        const text = r.value.text ?? '';
        if (text.startsWith(shown) && text.length > shown.length) ui.gen.append(text.slice(shown.length));
        showStats(r.value.stats);
        const s = r.value.stats;
        setState('done', `done · ${s.newTokens} tokens · prefill ${s.promptTokens} tokens at ${s.prefillTokensPerSecond.toFixed(0)} tokens/s · ${backend.name}`);
        break;
      }
      if (r.value.text) {
        ui.gen.append(r.value.text);
        shown += r.value.text;
      }
      showStats(r.value.stats);
      if (performance.now() - last > 30) {
        await paint();
        last = performance.now();
      }
    }
  } catch (e) {
    if (e instanceof PeftError && e.code === 'aborted') setState('done', 'stopped');
    else if (backend.name === 'webgpu') {
      disableWebGPU(`WebGPU failed: ${describe(e)}`);
      radio('wasm').checked = true;
      await load('wasm');
      ui.status.textContent = `WebGPU failed, back on wasm: ${describe(e)}`;
    } else setState('ready', describe(e));
  } finally {
    if (running === ctl) running = undefined;
  }
}

// ── wiring ─────────────────────────────────────────────────────────────────────────────────────────────────────
function showLoRA(): void {
  const on = ui.lora.checked;
  document.body.classList.toggle('lora-on', on);
  ui.loraState.textContent = on ? 'on' : 'off';
  ui.loraSays.textContent = on ? 'writes prose' : 'writes Python';
  // O(LoRA layers) flag flips: during a generation it takes effect from the next token.
  if (current) current.prose.enabled = on;
}

ui.lora.addEventListener('change', showLoRA);
ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (running) running.abort();
  else void generate();
});
for (const chip of document.querySelectorAll<HTMLButtonElement>('[data-prompt]')) {
  chip.addEventListener('click', () => {
    ui.prompt.value = chip.dataset.prompt ?? '';
    ui.prompt.focus();
  });
}
for (const r of ui.radios) r.addEventListener('change', () => r.checked && void load(r.value as BackendChoice));

const params = new URLSearchParams(location.search);
if (params.has('max')) ui.max.value = params.get('max')!;
if (params.has('prompt')) ui.prompt.value = params.get('prompt')!;
ui.lora.checked = params.get('lora') === 'on';
showLoRA();

const probe = probeWebGPU();
if (params.get('backend') === 'webgpu') {
  await probe;
  if (webgpuReason === undefined) radio('webgpu').checked = true;
}
await load(radio('webgpu').checked ? 'webgpu' : 'wasm');
