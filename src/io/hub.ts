import { IoError } from '../errors.js';
import { nodeDirCache } from './hub-cache-node.js';
import { readBody, resolveUrl, urlFileSet } from './http.js';
import { blobSource, bytesSource, throwIfAborted, type ByteSource } from './source.js';
import type { FileSet, OpenOptions } from './fileset.js';

/**
 * A HuggingFace Hub repository as a FileSet: `owner/repo[@revision]` → `<endpoint>/owner/repo/resolve/<revision>/<file>`,
 * the URLs `huggingface_hub` downloads from. Files are fetched on demand (Range requests for random access), or,
 * with `cache`, downloaded whole once and kept (the Cache API in browsers and Deno, a directory in Node and Bun).
 */

export const HUB_ENDPOINT = 'https://huggingface.co';

/** A parsed repository id. `revision` is a branch, tag or commit hash; `main` when absent. */
export interface HubRepo {
  owner?: string;
  name: string;
  revision: string;
}

/** One cached file: its bytes (or a random-access source over them) and the ETag it was served with. */
export interface HubCacheEntry {
  source: ByteSource;
  etag?: string;
}

/**
 * Where downloaded files are kept, keyed by their full URL (the revision is part of it). `get` answers
 * `undefined` on a miss; `put` may fail silently (a full disk must not fail a load that already has its bytes).
 */
export interface HubCache {
  readonly kind: string;
  get(url: string): Promise<HubCacheEntry | undefined>;
  put(url: string, bytes: Uint8Array, etag?: string): Promise<void>;
}

export interface HubOptions {
  /** Hub base URL (a mirror, or a local server in tests); default `https://huggingface.co`. */
  endpoint?: string;
  /** A sub-folder of the repository holding the adapter or model. */
  subfolder?: string;
  /** An access token for private or gated repositories (sent as `Authorization: Bearer …`). */
  token?: string;
  headers?: Record<string, string>;
  fetch?: typeof fetch;
  /**
   * Opt-in caching of whole files: `true` picks the runtime's store (Cache API `peftjs-hub` where `caches`
   * exists, else `$XDG_CACHE_HOME/peftjs/hub` or `~/.cache/peftjs/hub`); a string is a cache directory; or any
   * HubCache. A cached file is revalidated with its ETag (`If-None-Match` → 304, no body) unless the revision is
   * a commit hash, which cannot change; when the network fails, the cached copy is used.
   */
  cache?: boolean | string | HubCache;
}

const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$/;

function badId(id: string, detail: string): IoError {
  return new IoError('unsupported_source', 'not a Hub repository id', { expected: 'owner/repo or owner/repo@revision', got: id, detail });
}

/** `owner/repo[@revision]` (or `repo[@revision]` for the Hub's un-namespaced repositories) → HubRepo. */
export function parseHubRepo(id: string): HubRepo {
  const at = id.indexOf('@');
  const path = at < 0 ? id : id.slice(0, at);
  const revision = at < 0 ? 'main' : id.slice(at + 1);
  const parts = path.split('/');
  if (parts.length > 2) throw badId(id, 'at most one "/" before the revision');
  if (!parts.every((p) => NAME.test(p) && !p.includes('..'))) throw badId(id, 'names are letters, digits, ".", "_" and "-"');
  if (!revision || /[\s?#]/.test(revision) || revision.split('/').some((p) => p === '..' || p === '.')) throw badId(id, 'bad revision');
  return parts.length === 2 ? { owner: parts[0], name: parts[1]!, revision } : { name: parts[0]!, revision };
}

/** The directory URL of a repository's files at its revision: `<endpoint>/owner/repo/resolve/<revision>/[subfolder/]`. */
export function hubBaseUrl(repo: string | HubRepo, opts: Pick<HubOptions, 'endpoint' | 'subfolder'> = {}): string {
  const r = typeof repo === 'string' ? parseHubRepo(repo) : repo;
  const endpoint = (opts.endpoint ?? HUB_ENDPOINT).replace(/\/+$/, '');
  const sub = (opts.subfolder ?? '')
    .split('/')
    .filter((p) => p && p !== '.')
    .map((p) => {
      if (p === '..') throw new IoError('unsupported_source', 'subfolder leaves the repository', { expected: 'a path inside the repository', got: opts.subfolder });
      return `${encodeURIComponent(p)}/`;
    })
    .join('');
  // A revision may hold '/' (refs/pr/1): one path segment, as huggingface_hub sends it.
  return `${endpoint}/${r.owner ? `${encodeURIComponent(r.owner)}/` : ''}${encodeURIComponent(r.name)}/resolve/${encodeURIComponent(r.revision)}/${sub}`;
}

/** A full commit hash names bytes that never change: no need to ask the server again. */
const isCommit = (revision: string) => /^[0-9a-f]{40}$/i.test(revision);

/** Cache API store (browsers, Deno, workers): one Response per URL, ETag in its headers. */
export function cacheApiStore(name = 'peftjs-hub'): HubCache {
  const open = () => (globalThis as unknown as { caches: CacheStorage }).caches.open(name);
  return {
    kind: `Cache API "${name}"`,
    async get(url) {
      const res = await (await open()).match(url);
      if (!res) return undefined;
      const blob = await res.blob();
      return { source: blobSource(blob, url), etag: res.headers.get('etag') ?? undefined };
    },
    async put(url, bytes, etag) {
      try {
        const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) };
        if (etag) headers.etag = etag;
        await (await open()).put(url, new Response(bytes as Uint8Array<ArrayBuffer>, { headers }));
      } catch {
        // Quota exceeded or storage disabled (private mode): the load goes on uncached.
      }
    },
  };
}

function pickCache(cache: HubOptions['cache']): HubCache | undefined {
  if (!cache) return undefined;
  if (typeof cache === 'object') return cache;
  if (typeof cache === 'string') return nodeDirCache(cache);
  return typeof (globalThis as { caches?: unknown }).caches === 'object' ? cacheApiStore() : nodeDirCache();
}

function etagOf(res: Response): string | undefined {
  // The Hub sends X-Linked-Etag (the LFS object's sha256) for large files and ETag for small ones.
  return res.headers.get('x-linked-etag') ?? res.headers.get('etag') ?? undefined;
}

/**
 * A FileSet over a Hub repository. Use it wherever an adapter or model source is taken:
 * `LoRAContainer.fromPEFT(hubFileSet('owner/repo@v1'))`, or the string `'hf://owner/repo@v1'`.
 */
export function hubFileSet(repo: string, opts: HubOptions = {}): FileSet {
  const r = parseHubRepo(repo);
  const base = hubBaseUrl(r, opts);
  const headers = { ...opts.headers, ...(opts.token ? { Authorization: `Bearer ${opts.token}` } : {}) };
  const name = `hf://${repo}${opts.subfolder ? ` (${opts.subfolder})` : ''}`;
  const cache = pickCache(opts.cache);
  if (!cache) return { ...urlFileSet(base, { fetch: opts.fetch, headers }), name };

  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const pinned = isCommit(r.revision);

  /** The file's bytes, from the cache when still valid, else downloaded and stored; undefined on 404. */
  async function fetchCached(file: string, o: OpenOptions): Promise<ByteSource | undefined> {
    const url = resolveUrl(base, file).href;
    throwIfAborted(o.signal, url);
    const hit = await cache!.get(url).catch(() => undefined);
    if (hit && pinned) return hit.source;
    let res: Response;
    try {
      res = await doFetch(url, { headers: { ...headers, ...(hit?.etag ? { 'If-None-Match': hit.etag } : {}) }, signal: o.signal });
    } catch (e) {
      if (o.signal?.aborted) throw new IoError('aborted', 'read was aborted', { file: url, cause: o.signal.reason });
      // Offline: a cached copy is better than a failed load.
      if (hit) return hit.source;
      throw new IoError('read_failed', 'request failed', { file: url, detail: e instanceof Error ? e.message : String(e), cause: e });
    }
    if (res.status === 304 && hit) {
      void res.body?.cancel().catch(() => {});
      o.onProgress?.({ loaded: hit.source.size, total: hit.source.size });
      return hit.source;
    }
    if (res.status === 404) {
      void res.body?.cancel().catch(() => {});
      return undefined;
    }
    if (!res.ok) {
      void res.body?.cancel().catch(() => {});
      throw new IoError('http_error', 'HTTP request failed', { file: url, expected: 200, got: res.status });
    }
    const bytes = await readBody(res, url, o);
    await cache!.put(url, bytes, etagOf(res));
    return bytesSource(bytes, url);
  }

  return {
    name,
    open: (file, o = {}) => fetchCached(file, o),
    async readAll(file, o = {}) {
      const src = await fetchCached(file, o);
      return src && src.read(0, src.size, o.signal);
    },
  };
}
