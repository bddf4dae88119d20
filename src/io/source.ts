import { IoError } from '../errors.js';
import type { LoadLimits } from '../limits.js';

/**
 * A random-access, Blob-like view of one file: its `size`, and `read(start, end)` for the bytes
 * `[start, end)`. Implementations read lazily (a file handle, HTTP Range requests, a Blob slice), so a
 * reader can fetch a header first and only the tensors it needs. As in huggingface.js `WebBlob`/`FileBlob`.
 */
export interface ByteSource {
  /** A name a person can follow in error messages (file name, URL, path). */
  readonly name: string;
  readonly size: number;
  /** Bytes `[start, end)`; requires `0 ≤ start ≤ end ≤ size`. The result may be a view: do not mutate it. */
  read(start: number, end: number, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Fills `dest` with bytes `[start, start + dest.length)`, allocating nothing. Local files have it: a loader
   * streams tensors through one reused staging buffer, because on many machines committing fresh memory
   * costs more than the read itself.
   */
  readInto?(start: number, dest: Uint8Array, signal?: AbortSignal): Promise<void>;
  /** The caps of the load this source belongs to (set by a FileSet from `toFileSet`); readers use them as defaults. */
  readonly limits?: Readonly<LoadLimits>;
}

/** Throws IoError('aborted') if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, file: string): void {
  if (signal?.aborted) throw abortedError(file, signal.reason);
}

export function abortedError(file: string, reason?: unknown): IoError {
  return new IoError('aborted', 'read was aborted', { file, cause: reason });
}

/** Checks a `[start, end)` request against a source's size (IoError 'read_failed' when out of range). */
export function checkRange(name: string, size: number, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end > size) {
    throw new IoError('read_failed', 'byte range outside the file', {
      file: name,
      expected: `0 ≤ start ≤ end ≤ ${size}`,
      got: `[${start}, ${end})`,
    });
  }
}

/** A source over bytes already in memory. `read` returns zero-copy subarrays. */
export function bytesSource(data: Uint8Array | ArrayBuffer, name = 'bytes'): ByteSource {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return {
    name,
    size: bytes.byteLength,
    read(start, end, signal) {
      try {
        throwIfAborted(signal, name);
        checkRange(name, bytes.byteLength, start, end);
      } catch (e) {
        return Promise.reject(e);
      }
      return Promise.resolve(bytes.subarray(start, end));
    },
  };
}

/** A source over a Blob or File: each read is `blob.slice(start, end).arrayBuffer()`. */
export function blobSource(blob: Blob, name?: string): ByteSource {
  const fileName = (blob as Partial<File>).name;
  const label = name ?? (typeof fileName === 'string' && fileName ? fileName : 'blob');
  return {
    name: label,
    size: blob.size,
    async read(start, end, signal) {
      throwIfAborted(signal, label);
      checkRange(label, blob.size, start, end);
      const buf = await raceAbort(blob.slice(start, end).arrayBuffer(), signal, label);
      if (buf.byteLength !== end - start) {
        throw new IoError('truncated', 'blob returned fewer bytes than asked', { file: label, expected: end - start, got: buf.byteLength });
      }
      return new Uint8Array(buf);
    },
  };
}

/** Reads a whole source (one `read(0, size)`). */
export function readAllOf(src: ByteSource, signal?: AbortSignal): Promise<Uint8Array> {
  return src.read(0, src.size, signal);
}

/**
 * Resolves with `p`, or rejects with IoError('aborted') as soon as `signal` fires: for work that cannot be
 * cancelled itself (Blob.arrayBuffer, a file read), the caller still gets control back promptly.
 */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, file: string): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortedError(file, signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(file, signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
