import { IoError } from '../errors.js';
import type { ByteSource } from './source.js';
import type { FileSet } from './fileset.js';

/**
 * The browser twin of node.ts, swapped in by the `browser` build (tsup.config.ts): the same exports with no
 * `node:` import, so esbuild, Vite, webpack and Rollup bundle peftjs for the web with no configuration and no
 * warning. A local path has no meaning in a page: every entry point says so with a typed error.
 */
function noLocalFiles(what: string): IoError {
  return new IoError('unsupported_source', 'local paths need Node, Deno or Bun; in a browser pass a URL, files or a FileSystemDirectoryHandle', {
    expected: 'an http(s) URL, a Record/Map of files, or a FileSystemDirectoryHandle',
    got: what,
  });
}

export function fileUrlToPath(url: string | URL): Promise<string> {
  return Promise.reject(noLocalFiles(String(url)));
}

export function fileSource(path: string): Promise<ByteSource | undefined> {
  return Promise.reject(noLocalFiles(path));
}

export function dirFileSet(dir: string): FileSet {
  throw noLocalFiles(dir);
}
