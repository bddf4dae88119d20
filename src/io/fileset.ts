import { IoError } from '../errors.js';
import { readBody, urlFileSet } from './http.js';
import { hubFileSet } from './hub.js';
import { dirFileSet, fileUrlToPath } from './node.js';
import { blobSource, bytesSource, throwIfAborted, type ByteSource } from './source.js';
import { directoryHandleFileSet, isDirectoryHandle } from './web.js';

export interface OpenOptions {
  signal?: AbortSignal;
  /** Called while bytes arrive; `total` when known (Content-Length, file size). */
  onProgress?: (p: { loaded: number; total?: number }) => void;
}

/** A set of named files: an adapter directory, wherever it lives. `undefined` means "no such file". */
export interface FileSet {
  readonly name: string;
  open(file: string, opts?: OpenOptions): Promise<ByteSource | undefined>;
  readAll(file: string, opts?: OpenOptions): Promise<Uint8Array | undefined>;
  /** `open()` is cheap (no network round trip) and its sources have `readInto`: local files. */
  readonly randomAccess?: boolean;
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
export async function toFileSet(source: AdapterSource, opts: { fetch?: typeof fetch; headers?: Record<string, string> } = {}): Promise<FileSet> {
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
