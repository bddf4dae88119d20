import { IoError } from '../errors.js';
import { tooLarge } from '../limits.js';
import { blobSource, throwIfAborted } from './source.js';
import type { FileSet, OpenOptions } from './fileset.js';

/** The part of the File System Access API we use (a browser `FileSystemDirectoryHandle`). */
export interface DirectoryHandleLike {
  readonly kind?: 'directory';
  readonly name: string;
  getFileHandle(name: string): Promise<{ getFile(): Promise<Blob> }>;
  getDirectoryHandle?(name: string): Promise<DirectoryHandleLike>;
}

export function isDirectoryHandle(v: unknown): v is DirectoryHandleLike {
  return typeof v === 'object' && v !== null && typeof (v as DirectoryHandleLike).getFileHandle === 'function';
}

/** NotFoundError (missing), TypeMismatchError (a directory where a file was asked) → no such file. */
function isMissing(e: unknown): boolean {
  const n = (e as { name?: unknown })?.name;
  return n === 'NotFoundError' || n === 'TypeMismatchError';
}

/** A FileSet over a browser directory handle; `a/b.json` walks sub-directories. */
export function directoryHandleFileSet(root: DirectoryHandleLike): FileSet {
  async function blobOf(file: string, signal?: AbortSignal): Promise<Blob | undefined> {
    const parts = file.split('/').filter((p) => p !== '' && p !== '.');
    let dir = root;
    try {
      for (const p of parts.slice(0, -1)) {
        throwIfAborted(signal, file);
        if (!dir.getDirectoryHandle) return undefined;
        dir = await dir.getDirectoryHandle(p);
      }
      throwIfAborted(signal, file);
      const fh = await dir.getFileHandle(parts[parts.length - 1] ?? '');
      return await fh.getFile();
    } catch (e) {
      if (isMissing(e)) return undefined;
      if (e instanceof IoError) throw e;
      throw new IoError('read_failed', 'could not open the file', { file: `${root.name}/${file}`, detail: e instanceof Error ? e.message : String(e), cause: e });
    }
  }
  return {
    name: root.name,
    async open(file: string, o: OpenOptions = {}) {
      const blob = await blobOf(file, o.signal);
      return blob && blobSource(blob, `${root.name}/${file}`);
    },
    async readAll(file: string, o: OpenOptions = {}) {
      const blob = await blobOf(file, o.signal);
      if (!blob) return undefined;
      const src = blobSource(blob, `${root.name}/${file}`);
      if (src.size > (o.maxBytes ?? Infinity)) throw tooLarge(src.name, o.maxBytes!, src.size, 'maxBytes');
      const bytes = await src.read(0, src.size, o.signal);
      o.onProgress?.({ loaded: bytes.byteLength, total: src.size });
      return bytes;
    },
  };
}
