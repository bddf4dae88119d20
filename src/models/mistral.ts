import { llamaArchitecture } from './llama.js';

/**
 * Mistral: the Llama decoder without biases; `head_dim` may differ from hidden/heads. With a `sliding_window`
 * the context is capped at the window (where sliding and full attention agree).
 */
export const mistral = llamaArchitecture({ modelTypes: ['mistral'], biases: () => ({ qkv: false, o: false, mlp: false }) });
