import type { HubCache } from './hub.js';
import { fileSource } from './node.js';

/**
 * The Hub cache as a directory (Node, Bun; Deno has the Cache API): per URL, `<sha256(url)>.bin` holds the bytes
 * and `<sha256(url)>.json` the URL, ETag and size. Files are written to a temporary name and renamed, so a crash
 * mid-write never leaves a truncated entry that a later load would trust. Reached through dynamic `import()`
 * only; the browser build swaps in hub-cache-node.browser.ts.
 */
export function nodeDirCache(dir?: string): HubCache {
  let root: Promise<string> | undefined;
  const rootDir = () =>
    (root ??= (async () => {
      if (dir) return dir;
      const [{ homedir }, { join }, { env }] = await Promise.all([import('node:os'), import('node:path'), import('node:process')]);
      return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'peftjs', 'hub');
    })());
  const paths = async (url: string) => {
    const [{ createHash }, { join }] = await Promise.all([import('node:crypto'), import('node:path')]);
    const key = createHash('sha256').update(url).digest('hex');
    const d = await rootDir();
    return { dir: d, bin: join(d, `${key}.bin`), meta: join(d, `${key}.json`) };
  };
  return {
    get kind() {
      return `directory ${dir ?? '~/.cache/peftjs/hub'}`;
    },
    async get(url) {
      const fs = await import('node:fs/promises');
      const p = await paths(url);
      let meta: { url?: string; etag?: string; size?: number };
      try {
        meta = JSON.parse(await fs.readFile(p.meta, 'utf8')) as typeof meta;
      } catch {
        return undefined;
      }
      const source = await fileSource(p.bin);
      // A hash collision or a half-replaced entry: treat it as a miss.
      if (!source || meta.url !== url || meta.size !== source.size) return undefined;
      return { source, etag: meta.etag };
    },
    async put(url, bytes, etag) {
      const [fs, { pid }] = await Promise.all([import('node:fs/promises'), import('node:process')]);
      const p = await paths(url);
      const tmp = `.${pid}.${Math.random().toString(36).slice(2)}.tmp`;
      try {
        await fs.mkdir(p.dir, { recursive: true });
        await fs.writeFile(p.bin + tmp, bytes);
        await fs.writeFile(p.meta + tmp, JSON.stringify({ url, etag, size: bytes.byteLength }));
        // The entry counts only once its .json is in place: drop the old one before replacing the bytes.
        await fs.rm(p.meta, { force: true });
        await fs.rename(p.bin + tmp, p.bin);
        await fs.rename(p.meta + tmp, p.meta);
      } catch {
        // A read-only or full disk: the load goes on uncached.
        await Promise.all([fs.rm(p.bin + tmp, { force: true }), fs.rm(p.meta + tmp, { force: true })]).catch(() => {});
      }
    },
  };
}
