/**
 * Fuzz targets: each turns one input file (bytes) into a load, and says whether the outcome is allowed — a
 * result, or a PeftError (typed). Anything else (a RangeError, a TypeError, a hang) is a finding. Shared by the
 * suite's fast property tests (fixed seed) and `npm run fuzz` (fresh seeds, many runs, failures saved as
 * regression fixtures under test/fixtures/fuzz-regressions/<target>-*.bin, which the suite replays).
 */
import { createServer, type Server } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { PeftError } from '../../src/errors.js';
import { SafetensorsReader, writeSafetensors, SAFE_DTYPE_ORDER, SAFE_DTYPES, type SafeDType, type TensorToWrite } from '../../src/formats/safetensors.js';
import { unpickle } from '../../src/formats/pickle.js';
import { readTorchZip } from '../../src/formats/torch-zip.js';
import { bytesSource } from '../../src/io/source.js';
import { LoRAContainer } from '../../src/adapter/container.js';

const enc = new TextEncoder();

/** Small caps so that anything a 1 MB input can make is cheap, and a breach shows up as a typed error. */
const LIMITS = { maxTotalBytes: 64 << 20, maxElements: 1 << 24 };

/** Runs `f`; returns the PeftError it threw (or undefined); rethrows anything untyped — the finding. */
async function typed(f: () => unknown): Promise<PeftError | undefined> {
  try {
    await f();
    return undefined;
  } catch (e) {
    if (e instanceof PeftError) return e;
    throw e;
  }
}

// ── Targets ────────────────────────────────────────────────────────────────────────────────────────
export const TARGETS: Record<string, (bytes: Uint8Array) => Promise<void>> = {
  /** fromBytes and open() agree (same tensors or same error code); every listed tensor lies inside the file. */
  async safetensors(bytes) {
    let r: SafetensorsReader | undefined;
    const e1 = await typed(() => (r = SafetensorsReader.fromBytes(bytes, { limits: LIMITS })));
    const e2 = await typed(() => SafetensorsReader.open(bytesSource(bytes), { limits: LIMITS }));
    if (e1?.code !== e2?.code) throw new Error(`fromBytes and open disagree: ${e1?.code} vs ${e2?.code}`);
    if (!r) return;
    for (const t of r.tensors.values()) {
      if (r.dataOffset + t.end > bytes.byteLength || t.begin > t.end) throw new Error(`tensor ${t.name} outside the file`);
      if (r.bytesSync(t.name).byteLength !== t.end - t.begin) throw new Error('byte length');
      await typed(() => r!.typedSync(t.name));
    }
  },
  async torchzip(bytes) {
    await typed(() => readTorchZip(bytes, { limits: LIMITS }));
  },
  async pickle(bytes) {
    await typed(() => unpickle(bytes));
  },
  /** adapter_config.json bytes against a valid one-module adapter: load, then apply is not reached here. */
  async config(bytes) {
    await typed(() => LoRAContainer.fromPEFT({ 'adapter_config.json': bytes, 'adapter_model.safetensors': TINY_ADAPTER }, { limits: LIMITS }));
  },
  /** adapters.safetensors bytes under a valid MLX config. */
  async mlx(bytes) {
    await typed(() => LoRAContainer.fromMLX({ 'adapter_config.json': MLX_CONFIG, 'adapters.safetensors': bytes }, { limits: LIMITS }));
  },
  /**
   * A real HTTP server on 127.0.0.1 answering a PEFT adapter load as the input scripts it (see `HttpScript`): status,
   * Content-Encoding (honest or lying), Content-Length (right, wrong, absent), Range honoured or not, content type,
   * and the body of one of the two files replaced by mutated bytes.
   */
  async http(bytes) {
    const port = await httpServer();
    const id = String(++scriptId);
    scripts.set(id, bytes);
    try {
      await typed(() => LoRAContainer.fromPEFT(`http://127.0.0.1:${port}/${id}/`, { limits: LIMITS }));
    } finally {
      scripts.delete(id);
    }
  },
};

/** The outcome of one scripted HTTP load: 'ok' or the PeftError code (the http target's work, for tests). */
export async function httpOutcome(bytes: Uint8Array): Promise<string> {
  const port = await httpServer();
  const id = String(++scriptId);
  scripts.set(id, bytes);
  try {
    const e = await typed(() => LoRAContainer.fromPEFT(`http://127.0.0.1:${port}/${id}/`, { limits: LIMITS }));
    return e ? `${e.name} ${e.code}` : 'ok';
  } finally {
    scripts.delete(id);
  }
}
export { HTTP_CONFIG };

// ── HTTP: one server for the whole run, each load reads its script by the id in the URL ─────────────
/**
 * An HTTP input: byte 0 status, byte 1 encoding, byte 2 flags, byte 3 which file the body replaces, the rest the
 * body. Statuses and encodings are picked by index so every byte value means something.
 */
const STATUSES = [200, 200, 200, 200, 206, 301, 404, 416, 500, 503, 204, 429];
const ENCODINGS = ['identity', 'gzip', 'deflate', 'br', 'gzip-lie', 'br-lie', 'x-unknown'] as const;
const scripts = new Map<string, Uint8Array>();
let scriptId = 0;
let server: Promise<number> | undefined;

function httpServer(): Promise<number> {
  return (server ??= new Promise<number>((resolve) => {
    const srv: Server = createServer((req, res) => {
      const [, id, ...rest] = (req.url ?? '/').split('/');
      const name = rest.join('/');
      const script = scripts.get(id ?? '');
      if (!script) return void res.writeHead(404).end();
      const [statusByte = 0, encByte = 0, flags = 0, which = 0] = script;
      const replaced = which % 2 === 0 ? 'adapter_config.json' : 'adapter_model.safetensors';
      let body: Uint8Array | undefined = name === replaced ? script.subarray(4) : name === 'adapter_config.json' ? HTTP_CONFIG : name === 'adapter_model.safetensors' ? TINY_ADAPTER : undefined;
      if (!body) return void res.writeHead(404).end();
      // Only the scripted file gets the scripted status; the other answers plainly.
      const status = name === replaced ? STATUSES[statusByte % STATUSES.length]! : 200;
      const headers: Record<string, string> = { 'content-type': flags & 1 ? 'text/html' : 'application/octet-stream' };
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      let code = status;
      if (status === 200 && range && flags & 2) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]) + 1, body.length) : body.length;
        headers['content-range'] = flags & 8 ? `bytes ${start}-${end - 1}/*` : `bytes ${start}-${Math.max(start, end - 1)}/${body.length}`;
        body = body.subarray(start, end);
        code = 206;
      }
      const enc = ENCODINGS[encByte % ENCODINGS.length]!;
      let wire: Uint8Array = body;
      if (enc === 'gzip') wire = gzipSync(body);
      else if (enc === 'deflate') wire = deflateSync(body);
      else if (enc === 'br') wire = brotliCompressSync(body);
      if (enc !== 'identity') headers['content-encoding'] = enc.replace('-lie', '');
      if (flags & 4) headers['content-length'] = String(flags & 16 ? wire.length + ((flags >> 5) % 3) - 1 : wire.length);
      try {
        res.writeHead(code, headers);
        // A body with a lying Content-Length ends the connection early or late: the client sees a broken stream.
        res.end(code === 204 || req.method === 'HEAD' ? undefined : wire);
      } catch {
        res.destroy();
      }
    });
    srv.keepAliveTimeout = 1;
    srv.listen(0, '127.0.0.1', () => {
      srv.unref();
      resolve((srv.address() as { port: number }).port);
    });
  }));
}
const HTTP_CONFIG = enc.encode(JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q'] }));

const TINY_ADAPTER = writeSafetensors(
  {
    'base_model.model.q.lora_A.weight': { dtype: 'F32', shape: [2, 4], data: new Float32Array(8).fill(0.5) },
    'base_model.model.q.lora_B.weight': { dtype: 'F32', shape: [4, 2], data: new Float32Array(8).fill(0.25) },
  },
  { format: 'pt' },
);
const MLX_CONFIG = enc.encode(JSON.stringify({ fine_tune_type: 'lora', num_layers: 1, lora_parameters: { rank: 2, scale: 2, dropout: 0 } }));

// ── Generators: valid inputs, then mutated ─────────────────────────────────────────────────────────
const dtypeArb = fc.constantFrom(...SAFE_DTYPE_ORDER);
const shapeArb = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 });
const nameArb = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('9', '10', '__metadata', 'ü', '\u{1F600}', 'a"b', 'lora_A.weight'));

/** Valid safetensors files (every dtype, names of every kind), written by our writer. */
export const validSafetensors = fc
  .dictionary(nameArb, fc.tuple(dtypeArb, shapeArb), { maxKeys: 5 })
  .chain((spec) => {
    const entries = Object.entries(spec).filter(([n]) => n !== '__metadata__' && !/[\uD800-\uDFFF]/.test(n));
    return fc.tuple(
      fc.constant(entries),
      fc.tuple(...entries.map(([, [d, s]]) => fc.uint8Array({ minLength: bytesOf(d, s), maxLength: bytesOf(d, s) }))),
      fc.option(fc.dictionary(fc.string({ maxLength: 4 }).filter((k) => !/[\uD800-\uDFFF]/.test(k)), fc.constantFrom('pt', 'mlx', ''), { maxKeys: 2 }), { nil: undefined }),
    );
  })
  .map(([entries, datas, meta]) => {
    const tensors: Record<string, TensorToWrite> = {};
    entries.forEach(([n, [d, s]], i) => (tensors[n] = { dtype: d, shape: fixShape(d, s), data: datas[i]! }));
    return writeSafetensors(tensors, meta);
  });
function fixShape(d: SafeDType, s: number[]): number[] {
  // Sub-byte dtypes need whole bytes: F4 an even count, F6 a multiple of 4.
  const bits = SAFE_DTYPES[d].bits;
  const n = s.reduce((a, b) => a * b, 1);
  return bits >= 8 || (n * bits) % 8 === 0 ? s : [...s, 8];
}
function bytesOf(d: SafeDType, s: number[]): number {
  return (fixShape(d, s).reduce((a, b) => a * b, 1) * SAFE_DTYPES[d].bits) / 8;
}

/** Headers built from hostile parts: floats, -0, huge and negative numbers, deep nesting, repeats, odd dtypes. */
const weirdNumber = fc.constantFrom('0', '1', '4', '-0', '1.0', '1e0', '-1', '4294967296', '18446744073709551616', '9007199254740993', '1e400', '0.5');
const weirdValue: fc.Arbitrary<string> = fc.oneof(
  weirdNumber,
  fc.constantFrom('null', 'true', '"x"', '{}', '[]', '"\\ud800"', '"\\udc00x"', '"toString"', '"__proto__"', '"F8_E4M3FNUZ"', '"F4"', '"C64"', '"U64"'),
  fc.integer({ min: 1, max: 300 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
  fc.array(weirdNumber, { maxLength: 4 }).map((xs) => `[${xs.join(',')}]`),
);
const entryText = fc
  .tuple(fc.oneof(fc.constantFrom('"F32"', '"F16"', '"U8"', '"F4"', '"F6_E2M3"', '"C64"'), weirdValue), fc.oneof(fc.constantFrom('[1]', '[2,2]', '[]', '[0]'), weirdValue), fc.oneof(fc.constantFrom('[0,4]', '[0,0]', '[4,8]'), weirdValue), fc.option(fc.constantFrom('"dtype"', '"shape"', '"data_offsets"', '"x"')))
  .map(([d, s, o, rep]) => `{"dtype":${d},"shape":${s},"data_offsets":${o}${rep ? `,${rep}:${rep === '"x"' ? '[1.5]' : o}` : ''}}`);
export const craftedSafetensors = fc
  .tuple(fc.array(fc.tuple(fc.constantFrom('"a"', '"b"', '"a"', '"__metadata__"', '"9"'), fc.oneof(entryText, weirdValue)), { maxLength: 4 }), fc.integer({ min: 0, max: 40 }), fc.option(fc.integer({ min: -8, max: 8 })))
  .map(([items, dataLen, lenDelta]) => {
    const h = enc.encode(`{${items.map(([k, v]) => `${k}:${v}`).join(',')}}`);
    const out = new Uint8Array(8 + h.length + dataLen);
    new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, h.length + (lenDelta ?? 0))), true);
    out.set(h, 8);
    return out;
  });

/** Byte-level mutations of a valid input: overwrite, truncate, splice in a chunk, duplicate a span. */
export function mutated(base: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(base, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 3 })), { minLength: 1, maxLength: 6 })).map(([b, ops]) => {
    let out = new Uint8Array(b);
    for (const [pos, byte, kind] of ops) {
      const p = out.length ? pos % out.length : 0;
      if (kind === 0 && out.length) out[p] = byte;
      else if (kind === 1) out = out.slice(0, p);
      else if (kind === 2) out = new Uint8Array([...out.subarray(0, p), ...new Uint8Array(byte % 16).fill(byte), ...out.subarray(p)]);
      else out = new Uint8Array([...out, ...out.subarray(p, p + (byte % 64))]);
    }
    return out;
  });
}

// ── torch zip: a pickle assembler (opcodes: CPython pickletools) and a STORED zip writer (APPNOTE §4.3) ──
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
const u16 = (n: number) => [n & 0xff, (n >>> 8) & 0xff];
const str = (s: string) => {
  const b = enc.encode(s);
  return [0x58, ...u32(b.length), ...b];
};
const int = (n: number) => [0x4a, ...u32(n)];
const glob = (m: string, n: string) => [0x63, ...enc.encode(`${m}\n${n}\n`)];
const tup = (xs: number[][]) => [0x28, ...xs.flat(), 0x74];
interface TensorSpecArb {
  type: string;
  key: string;
  numel: number;
  offset: number;
  shape: number[];
  stride: number[];
}
export function statePickle(items: [string, TensorSpecArb][]): Uint8Array {
  const body = items.flatMap(([name, t]) => [
    ...str(name),
    ...glob('torch._utils', '_rebuild_tensor_v2'),
    0x28,
    ...tup([str('storage'), glob('torch', t.type), str(t.key), str('cpu'), int(t.numel)]),
    0x51,
    ...int(t.offset),
    ...tup(t.shape.map(int)),
    ...tup(t.stride.map(int)),
    0x89,
    ...glob('collections', 'OrderedDict'),
    0x29,
    0x52,
    0x74,
    0x52,
  ]);
  return new Uint8Array([0x80, 2, 0x7d, 0x28, ...body, 0x75, 0x2e]);
}
const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
export function storedZip(files: [string, Uint8Array][]): Uint8Array {
  const locals: number[] = [];
  const central: number[] = [];
  for (const [name, data] of files) {
    const nb = [...enc.encode(name)];
    const common = [...u16(20), ...u16(0), ...u16(0), ...u16(0), ...u16(0), ...u32(crc(data)), ...u32(data.length), ...u32(data.length), ...u16(nb.length), ...u16(0)];
    const off = locals.length;
    locals.push(...u32(0x04034b50), ...common, ...nb, ...data);
    central.push(...u32(0x02014b50), ...u16(20), ...common, ...u16(0), ...u16(0), ...u16(0), ...u32(0), ...u32(off), ...nb);
  }
  return new Uint8Array([...locals, ...central, ...u32(0x06054b50), 0, 0, 0, 0, ...u16(files.length), ...u16(files.length), ...u32(central.length), ...u32(locals.length), 0, 0]);
}
const tensorArb = fc
  .tuple(fc.constantFrom('FloatStorage', 'HalfStorage', 'LongStorage', 'BoolStorage', 'ComplexFloatStorage', 'constructor'), fc.constantFrom('0', '1'), fc.nat({ max: 12 }), fc.nat({ max: 4 }), fc.array(fc.tuple(fc.nat({ max: 5 }), fc.nat({ max: 6 })), { maxLength: 3 }))
  .map(([type, key, numel, offset, dims]) => ({ type, key, numel, offset, shape: dims.map((d) => d[0]), stride: dims.map((d) => d[1]) }));
/** A torch checkpoint from random tensors over two storages (strides of every kind: 0, transposed, overlapping, past the end). */
export const validTorchZip = fc
  .tuple(fc.array(fc.tuple(fc.string({ maxLength: 4 }), tensorArb), { maxLength: 4 }), fc.uint8Array({ maxLength: 96 }), fc.uint8Array({ maxLength: 96 }), fc.boolean())
  .map(([items, s0, s1, pklMutate]) => {
    const pkl = statePickle(items);
    if (pklMutate && pkl.length) pkl[(s0.length * 7) % pkl.length] ^= s1.length + 1; // a pickle-level change under a valid CRC
    return storedZip([
      ['archive/data.pkl', pkl],
      ['archive/byteorder', enc.encode('little')],
      ['archive/data/0', s0],
      ['archive/data/1', s1],
    ]);
  });
export const randomPickle = fc.oneof(
  validTorchZip.map((z) => z.subarray(30 + 'archive/data.pkl'.length)),
  fc.array(fc.constantFrom(...[0x80, 0x95, 0x2e, 0x28, 0x30, 0x31, 0x32, 0x7d, 0x5d, 0x29, 0x64, 0x6c, 0x74, 0x85, 0x86, 0x87, 0x4e, 0x88, 0x89, 0x4a, 0x4b, 0x4d, 0x8a, 0x47, 0x58, 0x8c, 0x8d, 0x43, 0x42, 0x71, 0x72, 0x94, 0x68, 0x6a, 0x63, 0x93, 0x52, 0x62, 0x51, 0x61, 0x65, 0x73, 0x75, 0xff, 0x00, 0x0a]), { maxLength: 200 }).map((a) => new Uint8Array(a)),
);

/** adapter_config.json texts: valid, then with hostile values in every field the loader reads. */
const cfgValue = fc.oneof(weirdValue, fc.constantFrom('8', '16', '"q"', '["q"]', '[[0,1]]', '{"q":4}', '{"q":1e300}', '"all-linear"', 'false'));
export const configText = fc
  .array(fc.tuple(fc.constantFrom('r', 'lora_alpha', 'target_modules', 'layer_replication', 'rank_pattern', 'alpha_pattern', 'layers_to_transform', 'use_dora', 'fan_in_fan_out', 'bias', 'modules_to_save', 'init_lora_weights', 'peft_type'), cfgValue), { maxLength: 4 })
  .map((kv) => enc.encode(`{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q"]${kv.map(([k, v]) => `,"${k}":${v}`).join('')}}`));

export const INPUTS: Record<keyof typeof TARGETS, fc.Arbitrary<Uint8Array>> = {
  safetensors: fc.oneof(validSafetensors, mutated(validSafetensors), craftedSafetensors),
  torchzip: fc.oneof(validTorchZip, mutated(validTorchZip)),
  pickle: fc.oneof(randomPickle, mutated(randomPickle)),
  config: fc.oneof(configText, mutated(configText)),
  mlx: fc.oneof(validSafetensors, mutated(validSafetensors), craftedSafetensors),
  http: fc
    .tuple(fc.nat({ max: 255 }), fc.nat({ max: 255 }), fc.nat({ max: 255 }), fc.nat({ max: 1 }), fc.oneof(configText, mutated(configText), validSafetensors, mutated(validSafetensors)))
    .map(([s, e, f, w, body]) => new Uint8Array([s, e, f, w, ...body])),
};
