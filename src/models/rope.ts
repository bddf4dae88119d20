import { ModelError } from '../errors.js';
import type { ConfigReader } from './config.js';

/** RoPE frequency rule from `rope_parameters` (transformers ≥ 5) or `rope_scaling` + `rope_theta` (older configs). */
export interface RopeSpec {
  readonly theta: number;
  readonly type: 'default' | 'linear' | 'llama3';
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositions: number;
}

const SUPPORTED = ['default', 'linear', 'llama3'] as const;

/** Reads the RoPE rule; an unsupported `rope_type` (dynamic, yarn, longrope…) is a typed error naming it. */
export function readRope(c: ConfigReader, maxPositions: number): RopeSpec {
  const params = c.obj('rope_parameters');
  const scaling = c.obj('rope_scaling');
  const p = params ?? scaling;
  const theta = params?.has('rope_theta') ? params.num('rope_theta') : c.num('rope_theta', 10000);
  const type = (p?.raw.rope_type ?? p?.raw.type ?? 'default') as string;
  if (!(SUPPORTED as readonly string[]).includes(type)) {
    throw new ModelError('config_invalid', 'unsupported RoPE type', { file: p?.file ?? c.file, key: 'rope_type', expected: SUPPORTED.join(' | '), got: type });
  }
  const t = type as RopeSpec['type'];
  return {
    theta,
    type: t,
    factor: t === 'default' ? 1 : p!.num('factor'),
    lowFreqFactor: t === 'llama3' ? p!.num('low_freq_factor') : 1,
    highFreqFactor: t === 'llama3' ? p!.num('high_freq_factor') : 1,
    originalMaxPositions: t === 'llama3' ? p!.int('original_max_position_embeddings') : maxPositions,
  };
}

const f = Math.fround;

/**
 * `inv_freq [hd/2]` as transformers computes it in f32: `1 / θ^(2i/hd)`, then the scaling rule
 * (linear: ÷ factor; llama3: long wavelengths ÷ factor, short kept, the band between interpolated).
 */
export function inverseFrequencies(spec: RopeSpec, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(spec.theta ** f((2 * i) / headDim)));
  if (spec.type === 'linear') for (let i = 0; i < half; i++) inv[i] = f(inv[i] / spec.factor);
  if (spec.type === 'llama3') {
    const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: old } = spec;
    const lowWavelen = old / lo;
    const highWavelen = old / hi;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      const scaled = wavelen > lowWavelen ? inv[i] / factor : inv[i];
      if (wavelen < highWavelen || wavelen > lowWavelen) inv[i] = f(scaled);
      else {
        const smooth = (old / wavelen - lo) / (hi - lo);
        inv[i] = f((1 - smooth) * (scaled / factor) + smooth * scaled);
      }
    }
  }
  return inv;
}

/**
 * cos/sin tables `[positions, hd/2]`: angle = fround(pos · inv_freq[j]) (transformers' f32 product), cos and sin
 * rounded once to f32. The rotate_half layout uses the same angle for j and j + hd/2.
 */
export function ropeTables(spec: RopeSpec, headDim: number, positions: number): { cos: Float32Array<ArrayBuffer>; sin: Float32Array<ArrayBuffer> } {
  const inv = inverseFrequencies(spec, headDim);
  const half = headDim / 2;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < half; j++) {
      const a = f(p * inv[j]);
      cos[p * half + j] = Math.cos(a);
      sin[p * half + j] = Math.sin(a);
    }
  }
  return { cos, sin };
}
