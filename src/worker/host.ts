import type { Backend } from '../backends/backend.js';
import { createBackend, init } from '../backends/index.js';
import { ApplyError, ModelError, WorkerError } from '../errors.js';
import type { AdapterSource } from '../io/fileset.js';
import type { LoadLimits } from '../limits.js';
import { LoRAContainer } from '../adapter/container.js';
import { setLoRAEnabled } from '../lora/set-enabled.js';
import { CausalLM, type DraftSpec, type GenerateOptions } from '../models/causal-lm.js';
import { defaultHostPort, type HostPort } from './endpoint.js';
import { PROTOCOL, isPeftMessage, toWireError, type ModelInfo, type Reply, type Request, type WireAdapter, type WireGenerateOptions, type WireSource } from './protocol.js';

interface Hosted {
  lm: CausalLM;
  adapters: Map<string, LoRAContainer>;
}

type Result = { value: unknown; transfer?: Transferable[] };

/**
 * The worker side of `WorkerLM`: answers its requests on `port` (default: this worker's own channel, `self` or
 * worker_threads' `parentPort`) with CausalLM and LoRAContainer, then says `ready`. A worker may host several
 * models (a drafter next to its verifier); each request runs as the same call on the main thread would, and
 * whatever it throws goes back as data (`toWireError`) to be re-created as the same error class.
 *
 * The worker script peftjs ships is `serveLM()` and nothing else; a bundler-built app can write its own worker
 * file the same way (`import { serveLM } from 'peftjs'; serveLM();`) and pass `new Worker(…)` to `WorkerLM.load`.
 */
export async function serveLM(port?: HostPort): Promise<void> {
  const p = port ?? (await defaultHostPort());
  const models = new Map<number, Hosted>();
  const running = new Map<number, AbortController>();
  const backends = new Map<string, Promise<Backend>>();
  let nextModel = 1;

  const post = (m: Reply, transfer: Transferable[] = []) => p.postMessage(m, transfer);

  const backendFor = (name: string): Promise<Backend> => {
    let b = backends.get(name);
    if (!b) {
      b = name === 'wasm' ? init() : createBackend(name as 'js');
      backends.set(name, b);
      b.catch(() => backends.delete(name)); // a later load may retry (a GPU that was busy)
    }
    return b;
  };

  const hosted = (id: number): Hosted => {
    const h = models.get(id);
    if (!h) throw new WorkerError('disposed', 'the model was disposed', { expected: 'a loaded model', got: `model #${id}` });
    return h;
  };

  const source = (s: WireSource): AdapterSource => s as AdapterSource;

  const info = (h: Hosted): ModelInfo => ({
    config: { ...h.lm.config, eos: [...h.lm.config.eos] },
    maxLength: h.lm.maxLength,
    backend: h.lm.backend.name,
    hasTokenizer: !!h.lm.tokenizer,
    description: String(h.lm),
    adapters: [...h.adapters.values()].map((c) => ({ name: c.name, enabled: c.enabled, modules: c.applied.length })),
  });

  /** Loads an adapter and puts it on `h`; the model is touched only once the adapter loaded and its name is free. */
  const addAdapter = async (h: Hosted, a: WireAdapter, id: number, signal: AbortSignal, limits?: Partial<LoadLimits>) => {
    if (a.name !== undefined && h.adapters.has(a.name)) throw duplicate(a.name);
    const opts = {
      name: a.name,
      signal,
      limits,
      onProgress: (q: { loaded: number; total?: number }) => post({ peftjs: PROTOCOL, type: 'progress', id, progress: { ...q, adapter: a.name } }),
    };
    const load = a.format === 'peft' ? LoRAContainer.fromPEFT : a.format === 'mlx' ? LoRAContainer.fromMLX : LoRAContainer.load;
    const c = await load.call(LoRAContainer, source(a.source) as never, opts);
    if (h.adapters.has(c.name)) throw duplicate(c.name);
    c.apply(h.lm);
    if (a.scale !== undefined) c.scale = a.scale;
    c.enabled = a.enabled ?? true;
    h.adapters.set(c.name, c);
  };

  const generateOptions = (o: WireGenerateOptions, signal: AbortSignal): GenerateOptions => {
    const { draft, ...rest } = o;
    if (!draft) return { ...rest, signal };
    const { model, ...d } = draft;
    const spec: DraftSpec = { ...d };
    if (model !== undefined) spec.model = hosted(model).lm;
    return { ...rest, signal, draft: spec };
  };

  async function handle(req: Exclude<Request, { type: 'abort' | 'hello' }>, signal: AbortSignal): Promise<Result> {
    switch (req.type) {
      case 'load': {
        const o = req.options;
        const backend = await backendFor(o.backend ?? 'wasm');
        const lm = await CausalLM.load(source(req.source), {
          backend,
          weightDtype: o.weightDtype,
          maxLength: o.maxLength,
          limits: o.limits as Partial<LoadLimits>,
          signal,
          onProgress: (q) => post({ peftjs: PROTOCOL, type: 'progress', id: req.id, progress: { loaded: q.loaded, total: q.total, file: q.file } }),
        });
        const h: Hosted = { lm, adapters: new Map() };
        try {
          for (const a of o.adapters ?? []) await addAdapter(h, a, req.id, signal, o.limits as Partial<LoadLimits>);
        } catch (e) {
          lm.dispose(); // the load fails as a whole: no half-adapted model stays behind
          throw e;
        }
        const id = nextModel++;
        models.set(id, h);
        return { value: { model: id, info: info(h) } };
      }
      case 'adapter': {
        const h = hosted(req.model);
        await addAdapter(h, req.adapter, req.id, signal, req.limits as Partial<LoadLimits>);
        return { value: info(h) };
      }
      case 'enable': {
        const h = hosted(req.model);
        if (req.adapter === undefined) setLoRAEnabled(h.lm, req.on);
        else {
          const c = h.adapters.get(req.adapter);
          if (!c) throw new ApplyError('not_applied', 'no adapter of this name on the model', { key: 'adapter', expected: [...h.adapters.keys()], got: req.adapter });
          c.enabled = req.on;
        }
        return { value: info(h) };
      }
      case 'generate': {
        const h = hosted(req.model);
        const it = h.lm.stream(req.prompt, generateOptions(req.options, signal));
        for (;;) {
          const r = await it.next();
          if (r.done) return { value: r.value };
          if (req.stream) post({ peftjs: PROTOCOL, type: 'chunk', id: req.id, chunk: r.value });
          // A decode step awaits only microtasks: without a task boundary here, an abort message would wait in the
          // queue until the whole generation had run.
          await yieldToMessages();
        }
      }
      case 'logits': {
        const h = hosted(req.model);
        let out = await h.lm.logits(req.ids, { layers: req.layers });
        // Transfer needs a whole, unshared buffer: copy a view or a SharedArrayBuffer once.
        const shared = typeof SharedArrayBuffer !== 'undefined' && out.buffer instanceof SharedArrayBuffer;
        if (shared || out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength) out = out.slice();
        return { value: out, transfer: [out.buffer as ArrayBuffer] };
      }
      case 'encode':
        return { value: hosted(req.model).lm.encode(req.text) };
      case 'decode': {
        const h = hosted(req.model);
        if (!h.lm.tokenizer) throw new ModelError('no_tokenizer', 'decoding needs tokenizer.json', { expected: 'tokenizer.json next to the model', got: 'no tokenizer' });
        return { value: h.lm.tokenizer.decode(req.ids, { skipSpecialTokens: req.skipSpecialTokens }) };
      }
      case 'dispose': {
        const h = models.get(req.model);
        models.delete(req.model);
        h?.lm.dispose();
        return { value: undefined };
      }
      default:
        throw new WorkerError('bad_message', 'unknown request', { expected: 'load | adapter | enable | generate | logits | encode | decode | dispose | abort', got: (req as { type: string }).type });
    }
  }

  const onMessage = (m: unknown) => {
    if (!isPeftMessage(m)) return; // not ours: the channel may carry an app's own messages
    const id = typeof m.id === 'number' ? m.id : -1;
    if (m.peftjs !== PROTOCOL) {
      post({ peftjs: PROTOCOL, type: 'error', id, error: toWireError(new WorkerError('bad_message', 'another peftjs protocol version', { expected: PROTOCOL, got: m.peftjs })) });
      return;
    }
    const req = m as Request;
    if (req.type === 'hello') {
      post({ peftjs: PROTOCOL, type: 'ready' });
      return;
    }
    if (req.type === 'abort') {
      running.get(req.target)?.abort(new ModelError('aborted', 'aborted by the caller'));
      return;
    }
    // Registered before the first await, so an abort right behind this request finds it.
    const ac = new AbortController();
    if (req.aborted) ac.abort(new ModelError('aborted', 'aborted by the caller before the request was sent'));
    running.set(id, ac);
    handle(req, ac.signal)
      .then(
        ({ value, transfer }) => post({ peftjs: PROTOCOL, type: 'done', id, value }, transfer),
        (e: unknown) => post({ peftjs: PROTOCOL, type: 'error', id, error: toWireError(e) }),
      )
      .catch((e: unknown) => post({ peftjs: PROTOCOL, type: 'error', id, error: toWireError(e) })) // a result that does not clone
      .finally(() => running.delete(id));
  };

  if (typeof p.on === 'function') p.on('message', onMessage);
  else if (typeof p.addEventListener === 'function') {
    p.addEventListener('message', (e) => onMessage(e.data));
    p.start?.();
  } else throw new WorkerError('not_a_worker', 'serveLM(port) needs a port', { expected: 'a MessagePort, parentPort or a worker scope', got: typeof p });
  post({ peftjs: PROTOCOL, type: 'ready' });
}

let channel: MessageChannel | undefined;
const waiting: (() => void)[] = [];

/**
 * Resolves after one macrotask, so messages that arrived meanwhile (an `abort`) are handled. A MessageChannel
 * rather than setTimeout: browsers clamp nested timeouts to 4 ms, which would cap decoding at 250 tokens/s.
 */
function yieldToMessages(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise((r) => setTimeout(r, 0));
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
    (channel.port1 as { unref?: () => void }).unref?.(); // never what keeps a Node worker alive
  }
  return new Promise<void>((r) => {
    waiting.push(r);
    channel!.port2.postMessage(null);
  });
}

function duplicate(name: string): ApplyError {
  return new ApplyError('already_applied', 'an adapter of this name is already on the model', { key: 'adapter', expected: 'a name not in use', got: name });
}
