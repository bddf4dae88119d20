import { IoError } from '../errors.js';
import { tooLarge } from '../limits.js';
import { checkRange, raceAbort, throwIfAborted, type ByteSource } from './source.js';
import type { FileSet, OpenOptions } from './fileset.js';

/**
 * Local files for Node, Deno and Bun, all of which implement `node:fs/promises`. The module is reached
 * only through a dynamic `import()`, so bundles for the browser never pull it in.
 */
type Fs = typeof import('node:fs/promises');
let fsPromise: Promise<Fs> | undefined;
function fs(): Promise<Fs> {
  fsPromise ??= import('node:fs/promises').catch((e: unknown) => {
    fsPromise = undefined;
    throw new IoError('unsupported_source', 'local files need node:fs (Node, Deno or Bun)', {
      expected: 'a runtime with node:fs/promises',
      got: 'none',
      cause: e,
    });
  });
  return fsPromise;
}

/** `file:///x/y` → `/x/y` (node:url, also dynamic). */
export async function fileUrlToPath(url: string | URL): Promise<string> {
  const { fileURLToPath } = await import('node:url');
  return fileURLToPath(url);
}

function joinPath(dir: string, file: string): string {
  if (!dir || dir.endsWith('/') || dir.endsWith('\\')) return dir + file;
  return `${dir}/${file}`;
}

function errCode(e: unknown): string | undefined {
  return (e as { code?: unknown })?.code as string | undefined;
}

function readFailed(path: string, e: unknown): IoError {
  return new IoError('read_failed', 'could not read the file', { file: path, detail: e instanceof Error ? e.message : String(e), cause: e });
}

/**
 * A source over one local file. Each `read` opens the file, reads at a position and closes it again:
 * a FileHandle that outlives its reader would leak a descriptor (Node warns when GC closes one), and
 * a loader makes only a handful of reads per file.
 */
export async function fileSource(path: string, signal?: AbortSignal): Promise<ByteSource | undefined> {
  const f = await fs();
  throwIfAborted(signal, path);
  let size: number;
  try {
    const st = await f.stat(path);
    if (!st.isFile()) return undefined;
    size = st.size;
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return undefined;
    throw readFailed(path, e);
  }
  /** Fills `out` with bytes from `start` on; one open/read/close per call (see above). */
  async function fill(out: Uint8Array, start: number, sig: AbortSignal | undefined): Promise<void> {
    throwIfAborted(sig, path);
    checkRange(path, size, start, start + out.byteLength);
    if (out.byteLength === 0) return;
    let handle: import('node:fs/promises').FileHandle;
    try {
      handle = await f.open(path, 'r');
    } catch (e) {
      throw readFailed(path, e);
    }
    try {
      await raceAbort(
        (async () => {
          let at = 0;
          // handle.read may return fewer bytes than asked: loop until full or end of file.
          while (at < out.byteLength) {
            throwIfAborted(sig, path);
            const { bytesRead } = await handle.read(out, at, out.byteLength - at, start + at);
            if (bytesRead === 0) throw new IoError('truncated', 'file ended early', { file: path, expected: start + out.byteLength, got: start + at });
            at += bytesRead;
          }
        })(),
        sig,
        path,
      );
    } catch (e) {
      throw e instanceof IoError ? e : readFailed(path, e);
    } finally {
      await handle.close().catch(() => {});
    }
  }
  return {
    name: path,
    size,
    async read(start, end, sig) {
      checkRange(path, size, start, end);
      const out = new Uint8Array(end - start);
      await fill(out, start, sig);
      return out;
    },
    readInto(start, dest, sig) {
      return fill(dest, start, sig);
    },
  };
}

/** A FileSet over a local directory. Missing files (ENOENT) are `undefined`. */
export function dirFileSet(dir: string): FileSet {
  return {
    name: dir,
    randomAccess: true,
    open(file: string, o: OpenOptions = {}) {
      return fileSource(joinPath(dir, file), o.signal);
    },
    async readAll(file: string, o: OpenOptions = {}) {
      const src = await fileSource(joinPath(dir, file), o.signal);
      if (!src) return undefined;
      if (src.size > (o.maxBytes ?? Infinity)) throw tooLarge(src.name, o.maxBytes!, src.size, 'maxBytes');
      const bytes = await src.read(0, src.size, o.signal);
      o.onProgress?.({ loaded: bytes.byteLength, total: src.size });
      return bytes;
    },
  };
}
