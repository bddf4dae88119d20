// The package as users get it: `npm pack` of this repository, unpacked into node_modules/peftjs of a scratch
// app, with peftjs's own dependencies (and any extra dev packages a test names) linked from this repository's
// node_modules. Needs dist/ (npm test and test:browser build first).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };

/** A fresh scratch app under test/artifacts/<prefix>… with peftjs installed from its tarball. */
export function scratchApp(prefix: string, extra: readonly string[] = []): { dir: string; cleanup(): void } {
  const base = join(ROOT, 'test/artifacts');
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, `${prefix}-`));
  // Its own package.json: inside this repository, `peftjs` would otherwise resolve to the repository itself
  // (package self-reference, which Node and TypeScript try before node_modules).
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `peftjs-${prefix}-app`, private: true, type: 'module' }));
  const out = execFileSync('npm', ['pack', '--json', '--silent', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' });
  const tgz = join(dir, (JSON.parse(out) as { filename: string }[])[0]!.filename);
  const target = join(dir, 'node_modules/peftjs');
  mkdirSync(target, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', target, '--strip-components=1']);
  rmSync(tgz);
  for (const dep of [...Object.keys(pkg.dependencies ?? {}), ...extra]) {
    const link = join(dir, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), link, 'dir');
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
