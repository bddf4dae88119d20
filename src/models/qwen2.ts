import { llamaArchitecture } from './llama.js';

/** Qwen2: the Llama decoder with biases on q/k/v (always), none on o_proj or the MLP; RoPE θ usually 1e6. */
export const qwen2 = llamaArchitecture({ modelTypes: ['qwen2'], biases: () => ({ qkv: true, o: false, mlp: false }) });
