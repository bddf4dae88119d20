import type { Backend } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { ModelError } from '../errors.js';
import { decodeTokens, emptyStats, speculativeTokens, type DecodeStats, type DecodeTarget, type Drafter } from '../generate/decode.js';
import type { SamplingOptions } from '../generate/sampling.js';
import type { AdapterSource } from '../io/fileset.js';
import type { LoadLimits } from '../limits.js';
import { loraLayersOf, setLoRAEnabled, withAdapters } from '../lora/set-enabled.js';
import type { RowAdapters } from '../lora/layer.js';
import { Module, disposeModule } from '../nn/module.js';
import { Tensor, deferFinalization } from '../tensor.js';
import type { Decoder } from './architecture.js';
import { supportedModelTypes } from './architecture.js';
import { findArchitecture } from './architectures.js';
import { readCheckpoint, type LoadProgress } from './checkpoint.js';
import { ConfigReader, type DecoderConfig } from './config.js';
import { KVCache } from './kv-cache.js';
import { TextStreamer, TextTokenizer } from './tokenizer.js';
import { WeightBag } from './weights.js';

export interface CausalLMLoadOptions {
  /** Where the weights live and the forward runs (default: `defaultBackend()`, wasm after `init()`). */
  backend?: Backend;
  /** Storage of the projection and embedding weights: 'bf16' keeps a bf16 checkpoint as it is (half the bytes per token). Default 'f32'. */
  weightDtype?: 'f32' | 'bf16';
  /** KV-cache capacity in positions (default: the model's context, at most 4096). */
  maxLength?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Caps of this load (docs/limits.md). */
  limits?: Partial<LoadLimits>;
  /** fetch for URL sources. */
  fetch?: typeof fetch;
}

/** The drafter of speculative decoding. */
export interface DraftSpec {
  /** Self-speculation: an adapter applied to this model (its name or its container), on while drafting, off while verifying. */
  adapter?: string | { readonly name: string };
  /** With `adapter`: the drafter runs the first K layers, then the final norm and head (early exit). Default all layers. */
  exitAfterLayers?: number;
  /**
   * With `adapter`: true (default) = one KV cache; the verifier's entries (adapter off) overwrite the drafter's, so the
   * drafter reads the verifier's keys for past tokens. false = the drafter keeps its own cache for its K layers
   * (adapter-on keys, K/L of the memory): higher acceptance, a catch-up step after each round.
   */
  sharedCache?: boolean;
  /** A separate drafter model (same tokenizer), with its own KV cache. */
  model?: CausalLM;
  /** Most tokens drafted per round, or 'auto' (from the measured costs and acceptance). Default 'auto'. */
  tokens?: number | 'auto';
  /** Adaptive draft length: stop drafting when the drafter's top-1 probability is below this (default 0.2, 0 = off). */
  minProbability?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens at most (default 64). */
  maxNewTokens?: number;
  /** Stop at any of these token ids or strings (the model's eos ids always stop). */
  stop?: ReadonlyArray<number | string> | number | string;
  signal?: AbortSignal;
  /** Speculative decoding (greedy, lossless: the output equals plain greedy decoding). */
  draft?: DraftSpec;
}

export interface GenerateResult {
  /** The new token ids (the prompt excluded). */
  tokens: number[];
  /** Their text, when the model has a tokenizer (cut before a stop string). */
  text?: string;
  stats: DecodeStats;
}

/** One streamed step: the token and the text it completed (may be '' while a character or a stop string is pending). */
export interface StreamChunk {
  token: number;
  text?: string;
  /** Live statistics of this generation. */
  stats: DecodeStats;
}

/**
 * A causal language model built from a HF checkpoint: a Module tree with HF paths (`model.layers.0.self_attn.q_proj`),
 * so `container.apply(lm)`, `setLoRAEnabled(lm, on)` and `container.enabled` work on it as on any tree, and every
 * matmul runs through the LoRA-capable layers. Owns one KV cache (created on first use).
 */
export class CausalLM extends Module {
  readonly config: DecoderConfig;
  readonly backend: Backend;
  readonly tokenizer?: TextTokenizer;
  readonly decoder: Decoder;
  readonly maxLength: number;
  #cache?: KVCache;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(config: DecoderConfig, backend: Backend, build: (root: Module) => Decoder, maxLength: number, tokenizer?: TextTokenizer) {
    super();
    this.config = config;
    this.backend = backend;
    this.tokenizer = tokenizer;
    this.maxLength = maxLength;
    this.decoder = build(this);
  }

  /**
   * Loads `config.json`, `model.safetensors` (or its shards) and the tokenizer from a directory, a URL, in-memory
   * files or a FileSystemDirectoryHandle. The config and every tensor's presence and shape are checked before
   * any layer is built (typed `ModelError` naming what is missing and what is supported).
   */
  static async load(source: AdapterSource, opts: CausalLMLoadOptions = {}): Promise<CausalLM> {
    const backend = opts.backend ?? defaultBackend();
    const ckpt = await readCheckpoint(source, { signal: opts.signal, onProgress: opts.onProgress, limits: opts.limits, fetch: opts.fetch });
    if (!ckpt.config) throw new ModelError('config_missing', 'config.json is missing', { file: 'config.json', where: ckpt.files.name, expected: 'a HF config.json next to the weights' });
    const reader = new ConfigReader(ckpt.config);
    const modelType = reader.str('model_type');
    const arch = findArchitecture(modelType);
    if (!arch) throw new ModelError('unknown_architecture', 'unsupported model_type', { file: 'config.json', key: 'model_type', expected: supportedModelTypes().join(' | '), got: modelType });
    const config = arch.parseConfig(reader);
    new WeightBag(ckpt.tensors).check(arch.tensors(config), modelType);
    if (opts.maxLength !== undefined && !(Number.isInteger(opts.maxLength) && opts.maxLength > 0)) throw new ModelError('bad_option', 'maxLength must be a positive integer', { key: 'maxLength', expected: 'an integer > 0', got: opts.maxLength });
    const maxLength = Math.min(opts.maxLength ?? 4096, config.maxPositions);
    const tokenizer = ckpt.tokenizer ? new TextTokenizer(ckpt.tokenizer.json, ckpt.tokenizer.config) : undefined;
    return new CausalLM(config, backend, (root) => arch.create(root, config, new WeightBag(ckpt.tensors), { backend, weightDtype: opts.weightDtype }), maxLength, tokenizer);
  }

  /** The model's KV cache (maxLength positions), allocated on first use. */
  get cache(): KVCache {
    return (this.#cache ??= this.createCache());
  }

  /** A new KV cache for this model (e.g. a second sequence). */
  createCache(maxLength = this.maxLength): KVCache {
    const c = this.config;
    return new KVCache(this.backend, c.layers, c.kvHeads, c.headDim, Math.min(maxLength, c.maxPositions));
  }

  /** ids → token ids, checked against the vocabulary. */
  #ids(ids: readonly number[] | Int32Array): Tensor {
    const v = this.config.vocab;
    const arr = Int32Array.from(ids);
    for (let i = 0; i < arr.length; i++) if (!(arr[i] >= 0 && arr[i] < v) || arr[i] !== ids[i]) throw new ModelError('bad_ids', 'token id out of range', { key: `ids[${i}]`, expected: `an integer 0 ≤ id < ${v}`, got: ids[i] });
    if (arr.length === 0) throw new ModelError('bad_ids', 'no token ids', { expected: 'at least one id', got: 0 });
    return Tensor.from(arr, [arr.length], 'i32');
  }

  /**
   * One forward: ids at positions `start …` (the cache holds `start` positions) → logits [m or 1, vocab] on the
   * backend. `layers` runs only the first K layers (early exit).
   */
  forward(ids: readonly number[] | Int32Array, start: number, opts: { cache?: KVCache; layers?: number; lastOnly?: boolean } = {}): Tensor {
    const cache = opts.cache ?? this.cache;
    const t = this.#ids(ids);
    return deferFinalization(() => this.decoder.forward(t, start, cache, { layers: opts.layers, lastOnly: opts.lastOnly }));
  }

  /**
   * Logits of every position of a fresh sequence: `Float32Array [len, vocab]`, with the adapters as they are set
   * now, or per position with `adapters` (`adapters[i]`: an adapter name, `null` for the base, or a list to stack;
   * one entry per id): every LoRA layer routes row i to its adapters (PEFT's `adapter_names`).
   */
  async logits(ids: readonly number[] | Int32Array, opts: { layers?: number; adapters?: readonly RowAdapters[] } = {}): Promise<Float32Array> {
    const { adapters } = opts;
    if (adapters && adapters.length !== ids.length) throw new ModelError('bad_option', 'adapters needs one entry per token id', { key: 'adapters', expected: ids.length, got: adapters.length });
    return this.#exclusive(async () => {
      const run = () => this.forward(ids, 0, { layers: opts.layers });
      const t = adapters ? withAdapters(this, adapters, run) : run();
      try {
        return (await t.read()) as Float32Array;
      } finally {
        t.dispose();
      }
    });
  }

  /**
   * A decode target over `cache`: runs the model with `adapter` switched on (or off) for this step only, and
   * `layers` layers. The switch is O(LoRA layers) and allocation-free, so flipping every step costs nothing.
   */
  target(opts: { cache?: KVCache; layers?: number; adapter?: { name: string; on: boolean } } = {}): DecodeTarget {
    const cache = opts.cache ?? this.cache;
    const { layers, adapter } = opts;
    return {
      vocab: this.config.vocab,
      run: async (ids, start, lastOnly) => {
        if (adapter) setLoRAEnabled(this, adapter.on, { adapter: adapter.name });
        const x = this.#ids(ids);
        const t = deferFinalization(() => this.decoder.forward(x, start, cache, { layers, lastOnly }));
        try {
          return (await t.read()) as Float32Array;
        } finally {
          t.dispose();
        }
      },
      truncate: (n) => cache.truncate(n),
    };
  }

  /** Token ids of a prompt (text needs the checkpoint's tokenizer). */
  encode(prompt: string | readonly number[]): number[] {
    if (typeof prompt !== 'string') return [...prompt];
    if (!this.tokenizer) throw new ModelError('no_tokenizer', 'a text prompt needs tokenizer.json', { expected: 'tokenizer.json next to the model, or token ids', got: 'no tokenizer' });
    return this.tokenizer.encode(prompt);
  }

  /** Streams new tokens (and their text) as they are decoded. Same options as `generate`. */
  async *stream(prompt: string | readonly number[], opts: GenerateOptions = {}): AsyncGenerator<StreamChunk, GenerateResult> {
    return yield* this.#turn(prompt, opts, true);
  }

  async *#turn(prompt: string | readonly number[], opts: GenerateOptions, perToken: boolean): AsyncGenerator<StreamChunk, GenerateResult> {
    // One generation at a time per model (they share its KV cache); later calls wait their turn.
    let release!: () => void;
    const turn = this.#queue;
    this.#queue = new Promise<void>((r) => (release = r));
    await turn;
    try {
      return yield* this.#stream(prompt, opts, perToken);
    } finally {
      release();
    }
  }

  /** `perToken`: text with every chunk (streaming); otherwise text is decoded once at the end unless stop strings need it. */
  async *#stream(prompt: string | readonly number[], opts: GenerateOptions, perToken: boolean): AsyncGenerator<StreamChunk, GenerateResult> {
    const ids = this.encode(prompt);
    const stopList = opts.stop === undefined ? [] : Array.isArray(opts.stop) ? opts.stop : [opts.stop];
    const stopIds = [...this.config.eos, ...stopList.filter((s): s is number => typeof s === 'number')];
    const stopStrings = stopList.filter((s): s is string => typeof s === 'string' && s.length > 0);
    if (stopStrings.length && !this.tokenizer) throw new ModelError('no_tokenizer', 'stop strings need tokenizer.json', { key: 'stop', expected: 'token ids', got: stopStrings });
    const o = { ...opts, maxNewTokens: opts.maxNewTokens ?? 64, stopTokens: stopIds };
    if (ids.length + o.maxNewTokens > this.cache.maxLen) {
      throw new ModelError('context_full', 'prompt + maxNewTokens does not fit the context', { expected: `≤ ${this.cache.maxLen} positions`, got: ids.length + o.maxNewTokens, detail: 'pass a larger maxLength to CausalLM.load or lower maxNewTokens' });
    }
    const stats = emptyStats(ids.length);
    const gen = opts.draft ? this.#speculative(ids, o, opts.draft, stats) : decodeTokens(this.target(), ids, o, stats);
    const streamer = this.tokenizer && (perToken || stopStrings.length > 0) ? new TextStreamer(this.tokenizer) : undefined;
    const tokens: number[] = [];
    let text = '';
    let shown = 0;
    for await (const tok of gen) {
      tokens.push(tok);
      if (!streamer) {
        yield { token: tok, stats };
        continue;
      }
      text += streamer.push(tok);
      const hit = firstStop(text, stopStrings);
      if (hit >= 0) {
        text = text.slice(0, hit);
        yield { token: tok, text: text.slice(shown), stats };
        shown = text.length;
        await gen.return(undefined);
        break;
      }
      // Hold back a tail that could still become a stop string.
      const safe = text.length - pendingStop(text, stopStrings);
      yield { token: tok, text: text.slice(shown, safe), stats };
      shown = Math.max(shown, safe);
    }
    if (streamer && firstStop(text, stopStrings) < 0) {
      text += streamer.flush();
      const hit = firstStop(text, stopStrings);
      if (hit >= 0) text = text.slice(0, hit);
    }
    if (this.tokenizer && !streamer) text = this.tokenizer.decode(tokens);
    return { tokens, text: this.tokenizer ? text : undefined, stats };
  }

  #speculative(ids: number[], o: Parameters<typeof decodeTokens>[2], d: DraftSpec, stats: DecodeStats) {
    const bad = (expected: string, got: unknown) => {
      throw new ModelError('bad_option', 'invalid draft options', { key: 'draft', expected, got });
    };
    if (!d.adapter === !d.model) bad('exactly one of draft.adapter (self-speculation) or draft.model', Object.keys(d));
    const layers = d.exitAfterLayers;
    if (layers !== undefined && !(Number.isInteger(layers) && layers >= 1 && layers <= this.config.layers)) bad(`exitAfterLayers 1…${this.config.layers}`, layers);
    if (d.adapter) {
      const name = typeof d.adapter === 'string' ? d.adapter : d.adapter.name;
      if (loraLayersOf(this, name).length === 0) throw new ModelError('bad_option', 'the draft adapter is not applied to this model', { key: 'draft.adapter', expected: 'the name of an adapter applied with container.apply(lm)', got: name });
      const shared = d.sharedCache !== false;
      const own = shared ? undefined : new KVCache(this.backend, layers ?? this.config.layers, this.config.kvHeads, this.config.headDim, this.cache.maxLen);
      const drafter: Drafter = { target: this.target({ layers, cache: own, adapter: { name, on: true } }), sharedCache: shared };
      const verifier = this.target({ adapter: { name, on: false } });
      return this.#restoring(name, speculativeTokens(verifier, drafter, ids, o, { tokens: d.tokens, minProbability: d.minProbability }, stats), own);
    } else {
      const m = d.model!;
      if (m.config.vocab !== this.config.vocab) bad(`a drafter with the same vocabulary (${this.config.vocab})`, m.config.vocab);
      const own = m.createCache(this.cache.maxLen);
      const drafter: Drafter = { target: m.target({ cache: own, layers }), sharedCache: false };
      const verifier = this.target();
      return disposing(speculativeTokens(verifier, drafter, ids, o, { tokens: d.tokens, minProbability: d.minProbability }, stats), own);
    }
  }

  /**
   * Runs a self-speculative generation with the drafter adapter's layers switched on (their layer-wide switch; the
   * adapter's own switch flips per step) and puts both switches back as they were afterwards.
   */
  async *#restoring(name: string, gen: AsyncGenerator<number>, own?: KVCache): AsyncGenerator<number> {
    const layers = loraLayersOf(this, name);
    const before = layers.map((l) => [l.loraEnabled, l.adapter(name)!.enabled] as const);
    for (const l of layers) l.loraEnabled = true;
    try {
      yield* gen;
    } finally {
      layers.forEach((l, i) => {
        l.setAdapterEnabled(name, before[i][1]);
        l.loraEnabled = before[i][0];
      });
      own?.dispose();
    }
  }

  /** Generates up to `maxNewTokens` tokens: greedy by default; temperature/topK/topP/seed sample; `draft` speculates. */
  async generate(prompt: string | readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
    const it = this.#turn(prompt, opts, false);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  /** Runs `fn` when no generation holds the model's cache. */
  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const turn = this.#queue;
    this.#queue = new Promise<void>((r) => (release = r));
    await turn;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Frees the KV cache and every layer's weights and adapters now (wasm memory, GPU buffers), not at GC. */
  dispose(): void {
    this.#cache?.dispose();
    this.#cache = undefined;
    for (const child of this.children.values()) disposeModule(child);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  override toString(): string {
    const c = this.config;
    return `CausalLM(${c.modelType}, layers=${c.layers}, hidden=${c.hidden}, heads=${c.heads}/${c.kvHeads}, vocab=${c.vocab}, ${this.backend.name})`;
  }
}

/** Frees `cache` when `gen` ends. */
async function* disposing(gen: AsyncGenerator<number>, cache: KVCache): AsyncGenerator<number> {
  try {
    yield* gen;
  } finally {
    cache.dispose();
  }
}

/** Index of the earliest stop string in `text`, or −1. */
function firstStop(text: string, stops: readonly string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** Length of the longest tail of `text` that is a proper prefix of a stop string (held back while streaming). */
function pendingStop(text: string, stops: readonly string[]): number {
  let n = 0;
  for (const s of stops) for (let k = Math.min(s.length - 1, text.length); k > n; k--) if (text.endsWith(s.slice(0, k))) n = k;
  return n;
}
