import { IoError } from '../errors.js';
import { DEFAULT_LIMITS, tooLarge } from '../limits.js';
import { abortedError, bytesSource, checkRange, throwIfAborted, type ByteSource } from './source.js';
import type { FileSet, OpenOptions } from './fileset.js';

/**
 * The first Range request of `open()` asks for this many bytes. One round trip then answers three
 * questions: does the server honour Range (206), how big is the file (Content-Range total), and — as
 * safetensors headers of adapters are a few KiB — usually the whole header, which later reads reuse.
 */
export const RANGE_PROBE_BYTES = 64 * 1024;

export interface HttpOptions {
  fetch?: typeof fetch;
  headers?: Record<string, string>;
  /** Largest ratio of decoded to wire bytes for a content-encoded body (default DEFAULT_LIMITS.maxInflateRatio). */
  maxInflateRatio?: number;
}

/** True for an abort raised by fetch or a body stream (DOMException 'AbortError' or our own). */
function isAbort(e: unknown, signal?: AbortSignal): boolean {
  return !!signal?.aborted || (e instanceof Error && (e.name === 'AbortError' || (e as { code?: unknown }).code === 'aborted'));
}

function toIoError(e: unknown, file: string, signal?: AbortSignal): IoError {
  if (e instanceof IoError) return e;
  if (isAbort(e, signal)) return abortedError(file, signal?.reason ?? e);
  return new IoError('read_failed', 'request failed', { file, detail: e instanceof Error ? e.message : String(e), cause: e });
}

/**
 * Content-Length counts the bytes on the wire; with a Content-Encoding (gzip, br) fetch hands us the
 * decoded body, whose length differs, so it can only be checked when the body is not encoded.
 */
function expectedLength(res: Response): number | undefined {
  const enc = res.headers.get('content-encoding');
  if (enc && enc.toLowerCase() !== 'identity') return undefined;
  const len = res.headers.get('content-length');
  if (len === null || !/^\d+$/.test(len.trim())) return undefined;
  return Number(len);
}

/** Bytes on the wire of a content-encoded body (its Content-Length), when the server sent one. */
function encodedLength(res: Response): number | undefined {
  const enc = res.headers.get('content-encoding');
  if (!enc || enc.toLowerCase() === 'identity') return undefined;
  const len = res.headers.get('content-length');
  return len !== null && /^\d+$/.test(len.trim()) ? Number(len) : undefined;
}

export interface BodyOptions extends OpenOptions {
  /** Largest ratio of decoded to wire bytes when the body is content-encoded and its wire length known. */
  maxInflateRatio?: number;
}

/**
 * Reads a Response body to the end: streams it so `onProgress({loaded, total})` sees every chunk,
 * stops promptly on abort, and checks the byte count against Content-Length (IoError 'truncated').
 * Bytes are counted after content decoding (gzip, br): past `maxBytes`, or past `maxInflateRatio` × the wire
 * length of an encoded body, the stream is cancelled and IoError 'too_large' thrown — a 1 MB gzip body that
 * inflates to gigabytes stops at the cap.
 */
export async function readBody(res: Response, file: string, opts: BodyOptions = {}): Promise<Uint8Array> {
  const { signal, onProgress } = opts;
  const total = expectedLength(res);
  throwIfAborted(signal, file);
  const maxBytes = opts.maxBytes ?? Infinity;
  const wire = encodedLength(res);
  const ratio = opts.maxInflateRatio ?? DEFAULT_LIMITS.maxInflateRatio;
  const cap = Math.min(maxBytes, wire !== undefined ? Math.max(wire, 1) * ratio : Infinity);
  const over = (got: number | string) =>
    cap < maxBytes ? tooLarge(file, cap, got, 'maxInflateRatio', `${wire} encoded bytes (${res.headers.get('content-encoding')}) × ${ratio}`) : tooLarge(file, cap, got, 'maxBytes');
  if (total !== undefined && total > cap) {
    void res.body?.cancel().catch(() => {});
    throw over(total);
  }
  if (!res.body) {
    const buf = new Uint8Array(await res.arrayBuffer());
    if (buf.byteLength > cap) throw over(buf.byteLength);
    onProgress?.({ loaded: buf.byteLength, total });
    if (total !== undefined && buf.byteLength < total) {
      throw new IoError('truncated', 'body ended early', { file, expected: total, got: buf.byteLength });
    }
    return buf;
  }
  const reader = res.body.getReader();
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  try {
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        if (isAbort(e, signal)) throw abortedError(file, signal?.reason ?? e);
        // A connection that closes before Content-Length bytes arrived surfaces as a stream error.
        if (total !== undefined && loaded < total) {
          throw new IoError('truncated', 'body ended early', { file, expected: total, got: loaded, cause: e });
        }
        throw toIoError(e, file, signal);
      }
      throwIfAborted(signal, file);
      if (r.done) break;
      loaded += r.value.byteLength;
      if (loaded > cap) {
        void reader.cancel().catch(() => {});
        throw over(`> ${cap}`);
      }
      chunks.push(r.value);
      onProgress?.({ loaded, total });
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (total !== undefined && loaded < total) {
    throw new IoError('truncated', 'body ended early', { file, expected: total, got: loaded });
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Resolves `file` against a base URL taken as a directory (a trailing '/' is added if missing). */
export function resolveUrl(base: string | URL, file: string): URL {
  const u = new URL(String(base));
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return new URL(file.split('/').map(encodeURIComponent).join('/'), u);
}

/** `bytes a-b/total` → numbers; undefined when absent or malformed. */
function parseContentRange(h: string | null): { start: number; end: number; total?: number } | undefined {
  const m = h && /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(h.trim());
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]) + 1, total: m[3] === '*' ? undefined : Number(m[3]) };
}

/** A FileSet over `base/` with fetch. 404 → `undefined` (callers may try another name); other statuses throw. */
export function urlFileSet(base: string | URL, opts: HttpOptions = {}): FileSet {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const name = String(base);

  async function get(file: string, range: string | undefined, signal?: AbortSignal): Promise<Response | undefined> {
    const url = resolveUrl(base, file);
    throwIfAborted(signal, url.href);
    let res: Response;
    try {
      res = await doFetch(url, { headers: { ...opts.headers, ...(range ? { Range: range } : {}) }, signal });
    } catch (e) {
      throw toIoError(e, url.href, signal);
    }
    if (res.status === 404) {
      void res.body?.cancel().catch(() => {});
      return undefined;
    }
    if (!res.ok && !(range && res.status === 416)) {
      void res.body?.cancel().catch(() => {});
      throw new IoError('http_error', 'HTTP request failed', { file: url.href, expected: range ? '200 or 206' : 200, got: res.status });
    }
    // A web page where a weight or config file should be: most often a dev server's single-page-app fallback
    // answering a missing file with index.html and 200. Say so before any parser sees the bytes.
    const type = res.headers.get('content-type') ?? '';
    if (/^\s*text\/html/i.test(type) && !/\.html?$/i.test(file)) {
      void res.body?.cancel().catch(() => {});
      throw new IoError('html_response', 'the server answered with a web page, not the file', {
        file: url.href,
        expected: `the bytes of ${file}`,
        got: `${res.status} ${type}`,
        detail: 'the file is probably missing and the server falls back to index.html (a single-page-app dev server); check the URL, or serve the folder as static files',
      });
    }
    return res;
  }

  const ratio = { maxInflateRatio: opts.maxInflateRatio };
  return {
    name,
    async readAll(file, o = {}) {
      const res = await get(file, undefined, o.signal);
      return res && readBody(res, resolveUrl(base, file).href, { ...o, ...ratio });
    },
    async open(file, o = {}) {
      const href = resolveUrl(base, file).href;
      const res = await get(file, `bytes=0-${RANGE_PROBE_BYTES - 1}`, o.signal);
      if (!res) return undefined;
      if (res.status === 416) {
        // Range not satisfiable at 0: an empty file (Content-Range: bytes */0).
        void res.body?.cancel().catch(() => {});
        return bytesSource(new Uint8Array(0), href);
      }
      const cr = res.status === 206 ? parseContentRange(res.headers.get('content-range')) : undefined;
      if (res.status !== 206 || !cr || cr.start !== 0 || cr.total === undefined) {
        // The server ignored Range and sent the whole file (200), or gave no usable total: keep the body.
        if (res.status === 206) {
          void res.body?.cancel().catch(() => {});
          const full = await get(file, undefined, o.signal);
          if (!full) return undefined;
          return bytesSource(await readBody(full, href, { ...o, ...ratio }), href);
        }
        return bytesSource(await readBody(res, href, { ...o, ...ratio }), href);
      }
      // A 206 body longer than the range it answers is refused while it streams. (`o.maxBytes` bounds whole
      // bodies; the probe is read-ahead, and the caller's budget counts only what it reads from the source.)
      const head = await readBody(res, href, { ...o, ...ratio, maxBytes: cr.end - cr.start });
      if (head.byteLength !== cr.end - cr.start) {
        throw new IoError('truncated', 'range body has the wrong length', { file: href, expected: cr.end - cr.start, got: head.byteLength });
      }
      return rangeSource(href, cr.total, head, (range, signal) => get(file, range, signal), opts.maxInflateRatio);
    },
  };
}

/** Random access over HTTP Range; `prefix` holds bytes `[0, prefix.length)` from the probe. */
function rangeSource(
  href: string,
  size: number,
  prefix: Uint8Array,
  get: (range: string, signal?: AbortSignal) => Promise<Response | undefined>,
  maxInflateRatio?: number,
): ByteSource {
  return {
    name: href,
    size,
    async read(start, end, signal) {
      throwIfAborted(signal, href);
      checkRange(href, size, start, end);
      if (end <= prefix.byteLength) return prefix.subarray(start, end);
      if (start === end) return new Uint8Array(0);
      const res = await get(`bytes=${start}-${end - 1}`, signal);
      if (!res) throw new IoError('not_found', 'file disappeared between reads', { file: href, expected: 206, got: 404 });
      // A range answer holds end − start bytes, a server that fell back to 200 the whole file: no more is read.
      const body = await readBody(res, href, { signal, maxInflateRatio, maxBytes: res.status === 200 ? size : end - start });
      if (res.status === 200) {
        // A server may stop honouring Range (a CDN miss): the body is the whole file then.
        if (body.byteLength !== size) throw new IoError('truncated', 'full body has the wrong length', { file: href, expected: size, got: body.byteLength });
        return body.subarray(start, end);
      }
      const cr = parseContentRange(res.headers.get('content-range'));
      if (res.status !== 206 || !cr || cr.start !== start) {
        throw new IoError('http_error', 'server answered a different range', {
          file: href,
          expected: `206 bytes ${start}-${end - 1}`,
          got: `${res.status} ${res.headers.get('content-range') ?? ''}`.trim(),
        });
      }
      if (body.byteLength !== end - start) {
        throw new IoError('truncated', 'range body has the wrong length', { file: href, expected: end - start, got: body.byteLength });
      }
      return body;
    },
  };
}
