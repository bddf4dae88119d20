import { PeftError } from '../src/errors.js';

/** Runs `fn` and returns its PeftError as `Name code: message`, for inline snapshots; anything else is rethrown. */
export function caughtSync(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof PeftError) return `${e.name} ${e.code}: ${e.message}`;
    throw e;
  }
  throw new Error('expected a throw');
}

/** The same for a promise (or a function returning one). */
export async function caught(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof PeftError) return `${e.name} ${e.code}: ${e.message}`;
    throw e;
  }
  throw new Error('expected a throw');
}
