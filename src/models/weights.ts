import { ModelError, type Issue } from '../errors.js';
import type { Tensor } from '../tensor.js';

/** A tensor an architecture needs: its checkpoint name and shape; `optional` ones may be absent (biases). */
export interface ExpectedTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly optional?: boolean;
}

/**
 * The checkpoint's tensors by name, checked against what the architecture expects before any layer is built:
 * every missing or mis-shaped tensor is listed in one `ModelError` (`missing_tensor` / `tensor_shape`).
 */
export class WeightBag {
  constructor(
    readonly tensors: ReadonlyMap<string, Tensor>,
    readonly file = 'model.safetensors',
  ) {}

  /** Throws when a required tensor is missing or any present one has the wrong shape. */
  check(expected: readonly ExpectedTensor[], modelType: string): void {
    const issues: Issue[] = [];
    for (const e of expected) {
      const t = this.tensors.get(e.name);
      if (!t) {
        if (!e.optional) issues.push({ code: 'missing_tensor', message: `missing tensor ${e.name} [${e.shape.join(', ')}]`, tensor: e.name, expected: e.shape });
      } else if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        issues.push({ code: 'tensor_shape', message: `${e.name}: expected [${e.shape.join(', ')}], got [${t.shape.join(', ')}]`, tensor: e.name, expected: e.shape, got: t.shape });
      }
    }
    if (issues.length) {
      const first = issues[0];
      throw new ModelError(first.code as 'missing_tensor' | 'tensor_shape', `the checkpoint does not fit its ${modelType} config (${issues.length} problem${issues.length > 1 ? 's' : ''}: ${issues.slice(0, 3).map((i) => i.message).join('; ')}${issues.length > 3 ? '; …' : ''})`, { file: this.file, tensor: first.tensor, expected: first.expected, got: first.got ?? 'missing' }, issues);
    }
  }

  /** A tensor `check` has vouched for. */
  get(name: string): Tensor {
    return this.tensors.get(name)!;
  }

  /** An optional tensor. */
  maybe(name: string): Tensor | undefined {
    return this.tensors.get(name);
  }
}
