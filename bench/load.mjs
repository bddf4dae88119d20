// Questions: how long does LoRAContainer.fromPEFT take on a 64 MiB f32 adapter next to a bare fs.readFile of the
// same file (warm page cache; goal ≤ 1.1×)? And how fast are the f16/bf16 → f32 conversions (goal ≥ 2 GB/s)?
// The adapter is generated once (Llama-7B shapes: 32 layers × q/k/v/o_proj, hidden 4096, r = 16 → 64 MiB of f32)
// into $TMPDIR/peftjs-bench-adapter with a few-line safetensors writer, so the bench does not trust our own writer.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { args, fmt, machine, randomF32, table, timeRounds } from './lib/common.mjs';
import { loadLib, libVersion } from './lib/ours.mjs';

const LAYERS = 32;
const HIDDEN = 4096;
const R = 16;
const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
/** 16 Mi elements: 32 MiB of f16/bf16 in, 64 MiB of f32 out, the same size as the adapter. */
const CONVERT_ELEMS = 16 * 1024 * 1024;

/** safetensors: u64 LE header length, JSON header (padded with spaces to 8 bytes), then the raw little-endian data. */
function safetensorsBytes(tensors) {
  const header = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + data.byteLength] };
    off += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let o = 8 + json.length;
  for (const { data } of Object.values(tensors)) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), o);
    o += data.byteLength;
  }
  return out;
}

/** Writes the adapter folder once; returns its path. */
export function makeAdapter(dir = path.join(os.tmpdir(), 'peftjs-bench-adapter')) {
  const file = path.join(dir, 'adapter_model.safetensors');
  if (existsSync(file) && existsSync(path.join(dir, 'adapter_config.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  const tensors = {};
  let seed = 1;
  for (let l = 0; l < LAYERS; l++)
    for (const mod of MODULES) {
      const key = `base_model.model.model.layers.${l}.self_attn.${mod}`;
      tensors[`${key}.lora_A.weight`] = { shape: [R, HIDDEN], data: randomF32(R * HIDDEN, seed++, 0.02) };
      tensors[`${key}.lora_B.weight`] = { shape: [HIDDEN, R], data: randomF32(HIDDEN * R, seed++, 0.02) };
    }
  writeFileSync(file, safetensorsBytes(tensors));
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: 'meta-llama/Llama-2-7b-hf',
    r: R,
    lora_alpha: 2 * R,
    lora_dropout: 0,
    target_modules: MODULES,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    inference_mode: true,
  };
  writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  return dir;
}

function disposeContainer(c) {
  for (const f of ['dispose', Symbol.dispose, 'unload']) {
    if (typeof c?.[f] === 'function') {
      try {
        c[f]();
        return;
      } catch {}
    }
  }
}

/** f16 bits → f32 bits in plain JS, exact for every pattern (subnormals renormalised, inf/NaN kept). */
function f16ToF32Js(src, dst) {
  const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = (h & 0x8000) << 16;
    const e = (h >> 10) & 0x1f;
    let m = h & 0x3ff;
    if (e === 0x1f) u[i] = sign | 0x7f800000 | (m << 13);
    else if (e) u[i] = sign | ((e + 112) << 23) | (m << 13);
    else if (m === 0) u[i] = sign;
    else {
      let ee = 113;
      while (!(m & 0x400)) {
        m <<= 1;
        ee--;
      }
      u[i] = sign | (ee << 23) | ((m & 0x3ff) << 13);
    }
  }
  return dst;
}

let LUT;
/** The same through a 65 536-entry table (256 KiB), the usual fast JS way. */
function f16ToF32Lut(src, dst) {
  if (!LUT) LUT = f16ToF32Js(Uint16Array.from({ length: 65536 }, (_, i) => i), new Float32Array(65536));
  for (let i = 0; i < src.length; i++) dst[i] = LUT[src[i]];
  return dst;
}

function bf16ToF32Js(src, dst) {
  const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
  return dst;
}

export async function runLoad({ quick = false, log = console.error } = {}) {
  const notes = [];
  let loadErr;
  const { lib, error } = await loadLib();
  if (!lib) notes.push(`peftjs not measured: ${error}`);
  else await lib.init(); // the converters run on the wasm runtime
  if (lib && !lib.LoRAContainer?.fromPEFT) {
    notes.push('LoRAContainer.fromPEFT is not exported from the package yet: load not measured');
    loadErr = true;
  }
  const ours = lib && `peftjs ${libVersion(lib)}`;

  // 1. fromPEFT vs readFile.
  const dir = makeAdapter();
  const file = path.join(dir, 'adapter_model.safetensors');
  const bytes = (await readFile(file)).byteLength; // also warms the page cache
  const fns = {
    read: async () => {
      if ((await readFile(file)).byteLength !== bytes) throw new Error('short read');
    },
  };
  if (lib && !loadErr) {
    fns.load = async () => {
      const c = await lib.LoRAContainer.fromPEFT(dir);
      disposeContainer(c);
    };
    try {
      const c = await lib.LoRAContainer.fromPEFT(dir);
      log(`fromPEFT: ${String(c).slice(0, 100)}; ${c.spec?.modules?.length ?? '?'} modules`);
      disposeContainer(c);
    } catch (e) {
      delete fns.load;
      notes.push(`LoRAContainer.fromPEFT failed: ${e.message.split('\n')[0]}`);
    }
  }
  // One call per round, the two alternating: each gets the same cache state and the same neighbours' noise.
  const rounds = quick ? 5 : 15;
  const t = await timeRounds(fns, { rounds, roundMs: 0, warmup: 1 });
  const read = t.read;
  const load = t.load;
  log(`readFile ${fmt.ms(read)} ms, fromPEFT ${load === undefined ? '—' : fmt.ms(load)} ms (${(bytes / 2 ** 20).toFixed(1)} MiB)`);

  // 2. Conversions.
  const src = new Uint16Array(CONVERT_ELEMS);
  {
    // Normal, finite f16 values (and bf16 values) of both signs.
    const r = randomF32(CONVERT_ELEMS, 7, 1);
    for (let i = 0; i < CONVERT_ELEMS; i++) src[i] = (r[i] < 0 ? 0x8000 : 0) | (0x3000 + ((Math.abs(r[i]) * 0x1000) | 0));
  }
  const dst = new Float32Array(CONVERT_ELEMS);
  const gbps = (ms) => (CONVERT_ELEMS * 2) / ms / 1e6; // 16-bit input bytes per second, in GB/s
  const conv = [];
  const cases = [];
  if (lib?.f16ToF32) cases.push([`**${ours} \`f16ToF32\`**`, 'f16', (s, d) => lib.f16ToF32(s, d)]);
  else if (lib) notes.push('f16ToF32 is not exported from the package');
  cases.push(['plain JS, bit ops', 'f16', f16ToF32Js], ['plain JS, 65 536-entry table', 'f16', f16ToF32Lut]);
  if (lib?.bf16ToF32) cases.push([`**${ours} \`bf16ToF32\`**`, 'bf16', (s, d) => lib.bf16ToF32(s, d)]);
  else if (lib) notes.push('bf16ToF32 is not exported from the package');
  cases.push(['plain JS, `u32[i] = u16[i] << 16`', 'bf16', bf16ToF32Js]);
  const ref = { f16: f16ToF32Js(src, new Float32Array(CONVERT_ELEMS)), bf16: bf16ToF32Js(src, new Float32Array(CONVERT_ELEMS)) };
  for (const [name, kind, fn] of cases) {
    const out = fn(src, dst) ?? dst;
    let bad = 0;
    for (let i = 0; i < CONVERT_ELEMS; i += 97) if (!Object.is(out[i], ref[kind][i])) bad++;
    if (bad) notes.push(`${name}: ${bad} sampled outputs differ from the reference`);
  }
  const t2 = await timeRounds(Object.fromEntries(cases.map(([name, , fn]) => [name, () => fn(src, dst)])), {
    rounds: quick ? 3 : 7,
    roundMs: quick ? 60 : 200,
  });
  for (const [name, kind] of cases) {
    conv.push({ name, kind, ms: t2[name], gbps: gbps(t2[name]) });
    log(`${kind} ${name}: ${fmt.ms(t2[name])} ms, ${gbps(t2[name]).toFixed(2)} GB/s in`);
  }
  return { bytes, read, load, conv, notes, ours, rounds };
}

export function loadTables({ bytes, read, load, conv, notes, ours, rounds }) {
  const mib = (bytes / 2 ** 20).toFixed(0);
  const rows = [[`\`fs.readFile\` (the floor)`, fmt.ms(read), '1.00×', `${(bytes / read / 1e6).toFixed(2)}`]];
  if (ours) rows.unshift([`**${ours} \`LoRAContainer.fromPEFT(dir)\`**`, load === undefined ? '—' : `**${fmt.ms(load)}**`, load === undefined ? '—' : `**${fmt.ratio(load / read)}**`, load === undefined ? '—' : `**${(bytes / load / 1e6).toFixed(2)}**`]);
  const out = [
    `#### Loading a ${mib} MiB f32 PEFT adapter (32 layers × q/k/v/o, r = 16, warm page cache)\n\n` +
      `Best of ${rounds} alternating runs; × = time over a bare \`fs.readFile\` of the same safetensors file (goal ≤ 1.1×).\n\n` +
      table(['what', 'ms', '× readFile', 'GB/s'], rows),
    `#### f16 / bf16 → f32 conversion (16 Mi values, one thread)\n\n` +
      'JS typed array in, JS typed array out; GB/s of 16-bit input read (the f32 output written is twice that); best of 7 interleaved rounds; goal ≥ 2 GB/s.\n\n' +
      table(['converter', 'from', 'ms', 'GB/s'], conv.map((c) => [c.name, c.kind, fmt.ms(c.ms), c.name.startsWith('**') ? `**${c.gbps.toFixed(2)}**` : c.gbps.toFixed(2)])),
  ];
  if (notes.length) out.push(notes.map((n) => `- ${n}`).join('\n'));
  return out.join('\n\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  const r = await runLoad({ quick: a.quick });
  console.log(`Machine: ${machine()}\n\n${loadTables(r)}`);
}
