import { IoError } from '../errors.js';
import { ByteBudget, resolveLimits, tooLarge, type LoadLimits } from '../limits.js';
import { readBody, urlFileSet } from './http.js';
import { hubFileSet } from './hub.js';
import { dirFileSet, fileUrlToPath } from './node.js';
import { blobSource, bytesSource, throwIfAborted, type ByteSource } from './source.js';
import { directoryHandleFileSet, isDirectoryHandle } from './web.js';

export interface OpenOptions {
  signal?: AbortSignal;
  /** Called while bytes arrive; `total` when known (Content-Length, file size). */
  onProgress?: (p: { loaded: number; total?: number }) => void;
  /**
   * `readAll` (and the whole-body fallback of an HTTP `open`) reads at most this many bytes, counted after
   * content decoding; beyond it IoError 'too_large', before the bytes are allocated where the size is known.
   */
  maxBytes?: number;
}

/** A set of named files: an adapter directory, wherever it lives. `undefined` means "no such file". */
export interface FileSet {
  readonly name: string;
  open(file: string, opts?: OpenOptions): Promise<ByteSource | undefined>;
  readAll(file: string, opts?: OpenOptions): Promise<Uint8Array | undefined>;
  /** `open()` is cheap (no network round trip) and its sources have `readInto`: local files. */
  readonly randomAccess?: boolean;
  /** The caps and byte budget this FileSet enforces (FileSets from `toFileSet` have them). */
  readonly limits?: Readonly<LoadLimits>;
  readonly budget?: ByteBudget;
}

/** One in-memory file. A `File` is a Blob. A Response body is read once, on first use, then kept. */
export type FileLike = Uint8Array | ArrayBuffer | Blob | Response;

export type AdapterSource = string | URL | FileSet | Record<string, FileLike> | Map<string, FileLike> | FileSystemDirectoryHandle;

export function isFileSet(v: unknown): v is FileSet {
  return typeof v === 'object' && v !== null && typeof (v as FileSet).open === 'function' && typeof (v as FileSet).readAll === 'function';
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'object';
}

/** A FileSet over files held in memory (name → bytes, Blob/File or Response). */
export function memoryFileSet(files: Record<string, FileLike> | Map<string, FileLike>, name = 'memory'): FileSet {
  const map = files instanceof Map ? files : new Map(Object.entries(files));
  const responses = new Map<string, Promise<Uint8Array>>();

  async function bytesOf(file: string, o: OpenOptions): Promise<Uint8Array | ByteSource | undefined> {
    throwIfAborted(o.signal, file);
    const v = map.get(file);
    if (v === undefined) return undefined;
    if (v instanceof Uint8Array) return v;
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (typeof Blob !== 'undefined' && v instanceof Blob && v.size > (o.maxBytes ?? Infinity)) throw tooLarge(file, o.maxBytes!, v.size, 'maxBytes');
    if (typeof Blob !== 'undefined' && v instanceof Blob) return blobSource(v, file);
    if (typeof Response !== 'undefined' && v instanceof Response) {
      if (v.status === 404) return undefined;
      if (!v.ok) throw new IoError('http_error', 'HTTP response is not OK', { file, expected: 200, got: v.status });
      let p = responses.get(file);
      if (!p) {
        // A body can be consumed only once: share the promise, forget it if it fails so a retry can see why.
        p = readBody(v, file, o);
        responses.set(file, p);
        p.catch(() => responses.delete(file));
      }
      return p;
    }
    throw new IoError('unsupported_source', 'unsupported in-memory file', {
      file,
      expected: 'Uint8Array, ArrayBuffer, Blob, File or Response',
      got: describe(v),
    });
  }

  return {
    name,
    async open(file, o = {}) {
      const b = await bytesOf(file, o);
      return b instanceof Uint8Array ? bytesSource(b, file) : b;
    },
    async readAll(file, o = {}) {
      const b = await bytesOf(file, o);
      if (b === undefined) return undefined;
      const size = b instanceof Uint8Array ? b.byteLength : b.size;
      if (size > (o.maxBytes ?? Infinity)) throw tooLarge(file, o.maxBytes!, size, 'maxBytes');
      const bytes = b instanceof Uint8Array ? b : await b.read(0, b.size, o.signal);
      o.onProgress?.({ loaded: bytes.byteLength, total: bytes.byteLength });
      return bytes;
    },
  };
}

/**
 * Turns whatever names an adapter into a FileSet:
 * - `'http(s)://…'` or a URL: files relative to it, taken as a directory (fetch, Range for random access);
 * - `'hf://owner/repo[@revision]'`: a HuggingFace Hub repository (hub.ts; `hubFileSet` for a mirror, a token or a cache);
 * - `'file://…'` or any other string: a local directory (Node, Deno, Bun);
 * - a FileSet: itself; a Record or Map of name → bytes/Blob/File/Response: in memory;
 * - a browser `FileSystemDirectoryHandle`.
 */
export async function toFileSet(
  source: AdapterSource,
  opts: { fetch?: typeof fetch; headers?: Record<string, string>; limits?: Partial<LoadLimits> } = {},
): Promise<FileSet> {
  // A FileSet that already enforces limits (made by an earlier toFileSet) keeps its own: wrapping it again
  // would put a second budget, with the defaults, in front of the caller's.
  if (isFileSet(source) && source.budget && !opts.limits) return source;
  const lim = resolveLimits(opts.limits);
  return limitedFileSet(await rawFileSet(source, { ...opts, maxInflateRatio: lim.maxInflateRatio }), lim);
}

async function rawFileSet(source: AdapterSource, opts: { fetch?: typeof fetch; headers?: Record<string, string>; maxInflateRatio?: number }): Promise<FileSet> {
  if (typeof source === 'string' || source instanceof URL) {
    const s = String(source);
    if (/^https?:\/\//i.test(s)) return urlFileSet(s, opts);
    if (/^hf:\/\//i.test(s)) return hubFileSet(s.slice('hf://'.length), opts);
    if (/^file:/i.test(s)) return dirFileSet(await fileUrlToPath(s));
    if (source instanceof URL) {
      throw new IoError('unsupported_source', 'unsupported URL scheme', { expected: 'http:, https: or file:', got: source.protocol });
    }
    return dirFileSet(s);
  }
  if (isFileSet(source)) return source;
  if (source instanceof Map) return memoryFileSet(source);
  if (isDirectoryHandle(source)) return directoryHandleFileSet(source);
  if (typeof source === 'object' && source !== null && [Object.prototype, null].includes(Object.getPrototypeOf(source))) {
    return memoryFileSet(source as Record<string, FileLike>);
  }
  throw new IoError('unsupported_source', 'cannot read an adapter from this value', {
    expected: 'URL, path, FileSet, Record/Map of files or FileSystemDirectoryHandle',
    got: describe(source),
  });
}

/**
 * A FileSet that enforces `limits` on every read of one load: one ByteBudget (maxTotalBytes) for all files,
 * ranges and decoded HTTP bodies, reserved before each read; JSON files (read whole and parsed in memory)
 * capped at maxJsonBytes. Its sources carry `limits`, which SafetensorsReader.open takes as its defaults.
 */
export function limitedFileSet(inner: FileSet, limits?: Partial<LoadLimits>): FileSet {
  const lim = resolveLimits(limits);
  const budget = new ByteBudget(lim.maxTotalBytes);
  const capFor = (file: string, o: OpenOptions): [number, keyof LoadLimits | 'maxBytes'] => {
    const caps: [number, keyof LoadLimits | 'maxBytes'][] = [[budget.remaining, 'maxTotalBytes']];
    if (o.maxBytes !== undefined) caps.push([o.maxBytes, 'maxBytes']);
    if (/\.json$/i.test(file)) caps.push([lim.maxJsonBytes, 'maxJsonBytes']);
    return caps.reduce((a, b) => (b[0] < a[0] ? b : a));
  };
  const relabel = (e: unknown, file: string, cap: number, name: string): unknown =>
    // The inner FileSet names the cap it was handed 'maxBytes'; say which limit it really was.
    e instanceof IoError && e.code === 'too_large' && name !== 'maxBytes' && String(e.expected).endsWith('(maxBytes)') ? tooLarge(e.file ?? file, cap, e.got as number, name as keyof LoadLimits) : e;
  return {
    name: inner.name,
    randomAccess: inner.randomAccess,
    limits: lim,
    budget,
    async readAll(file, o = {}) {
      const [cap, name] = capFor(file, o);
      let bytes: Uint8Array | undefined;
      try {
        bytes = await inner.readAll(file, { ...o, maxBytes: cap });
      } catch (e) {
        throw relabel(e, file, cap, name);
      }
      if (!bytes) return undefined;
      if (bytes.byteLength > cap) throw tooLarge(file, cap, bytes.byteLength, name);
      budget.take(bytes.byteLength, file);
      return bytes;
    },
    async open(file, o = {}) {
      const [cap, name] = capFor(file, o);
      let src: ByteSource | undefined;
      try {
        src = await inner.open(file, { ...o, maxBytes: cap });
      } catch (e) {
        throw relabel(e, file, cap, name);
      }
      return src && budgetedSource(src, budget, lim);
    },
  };
}

/** `src` with every read reserved from `budget` first (IoError 'too_large' before the bytes are fetched). */
function budgetedSource(src: ByteSource, budget: ByteBudget, limits: Readonly<LoadLimits>): ByteSource {
  return {
    name: src.name,
    size: src.size,
    limits,
    read(start, end, signal) {
      try {
        budget.take(Math.max(0, end - start), src.name);
      } catch (e) {
        return Promise.reject(e);
      }
      return src.read(start, end, signal);
    },
    ...(src.readInto
      ? {
          readInto(start: number, dest: Uint8Array, signal?: AbortSignal) {
            try {
              budget.take(dest.byteLength, src.name);
            } catch (e) {
              return Promise.reject(e);
            }
            return src.readInto!(start, dest, signal);
          },
        }
      : {}),
  };
}
