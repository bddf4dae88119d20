import { type Architecture, architectureFor, registerArchitecture } from './architecture.js';
import type { DecoderConfig } from './config.js';
import { gpt2 } from './gpt2.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { qwen2 } from './qwen2.js';

/** The architectures peftjs ships (one file each); `registerArchitecture` adds more. Explicit, not import side effects, so bundlers keep them. */
export const BUILTIN_ARCHITECTURES: readonly Architecture<DecoderConfig>[] = [llama, qwen2, mistral, gpt2] as never;

let registered = false;

/** The architecture for `model_type`, builtins registered on first use (a user's registration of the same type wins). */
export function findArchitecture(modelType: string): Architecture | undefined {
  if (!registered) {
    registered = true;
    for (const a of BUILTIN_ARCHITECTURES) for (const t of a.modelTypes) if (!architectureFor(t)) registerArchitecture(a);
  }
  return architectureFor(modelType);
}
