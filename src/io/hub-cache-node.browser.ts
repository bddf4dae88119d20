import { IoError } from '../errors.js';
import type { HubCache } from './hub.js';

/** The browser twin of hub-cache-node.ts: a page has no directory to cache in (use `cache: true`, the Cache API). */
export function nodeDirCache(dir?: string): HubCache {
  throw new IoError('unsupported_source', 'a cache directory needs Node, Deno or Bun; in a browser use cache: true (the Cache API)', {
    expected: 'cache: true or a HubCache',
    got: dir ?? 'a cache directory',
  });
}
