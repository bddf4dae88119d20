// Progress of long loads in the CLI: silent for a load under a second, then a bar redrawn in place on a TTY or plain
// lines otherwise; `merge`, `convert` and `inspect --full` hand their loaders a reporter.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { convertAdapter } from '../../src/cli/convert.js';
import { mergeCheckpoint } from '../../src/cli/merge.js';
import { progressReporter, type ProgressEvent } from '../../src/cli/progress.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const PYCODER = join(ROOT, 'models/pycoder');

/** A sink that records what was written, and a clock the test moves by hand. */
function setup(tty: boolean) {
  const out: string[] = [];
  let t = 0;
  const report = progressReporter('model', { isTTY: tty, write: (s: string) => out.push(s) }, () => t);
  return { out, report, at: (ms: number) => (t = ms) };
}

describe('progressReporter', () => {
  test('a load that ends within its first second prints nothing', () => {
    const { out, report, at } = setup(false);
    for (const [ms, loaded] of [[100, 10], [600, 50], [999, 100]] as const) {
      at(ms);
      report({ loaded, total: 100 });
    }
    expect(out).toEqual([]);
  });

  test('not a TTY: after a second, one plain line per quarter reached, with MiB', () => {
    const { out, report, at } = setup(false);
    const MiB = 2 ** 20;
    at(500);
    report({ loaded: 1 * MiB, total: 8 * MiB, file: 'model.safetensors' });
    at(1200);
    for (const m of [3, 3.5, 5, 7, 8]) report({ loaded: m * MiB, total: 8 * MiB, file: 'model.safetensors' });
    expect(out).toEqual([
      'model model.safetensors: 38% (3.0 of 8.0 MiB)\n', // 3/8 is in the second quarter: its first line
      'model model.safetensors: 63% (5.0 of 8.0 MiB)\n',
      'model model.safetensors: 88% (7.0 of 8.0 MiB)\n',
      'model model.safetensors: 100% (8.0 of 8.0 MiB)\n',
    ]);
  });

  test('a TTY: a bar redrawn in place (\\r, erase line), ended by a newline at 100 %', () => {
    const { out, report, at } = setup(true);
    at(1500);
    report({ loaded: 50, total: 100 });
    report({ loaded: 100, total: 100 });
    expect(out).toEqual([`\r\x1b[Kmodel [${'█'.repeat(15)}${' '.repeat(15)}] 50% 0.0 of 0.0 MiB`, `\r\x1b[Kmodel [${'█'.repeat(30)}] 100% 0.0 of 0.0 MiB`, '\n']);
  });

  test('a new segment (bytes from zero again: the weights after the config) gets its own lines; no total: MiB only', () => {
    const { out, report, at } = setup(false);
    at(2000);
    report({ loaded: 500, total: 500 }); // adapter_config.json, whole
    report({ loaded: 0, total: 4 * 2 ** 20 });
    report({ loaded: 4 * 2 ** 20, total: 4 * 2 ** 20 });
    expect(out).toEqual(['model: 100% (0.0 of 0.0 MiB)\n', 'model: 0% (0.0 of 4.0 MiB)\n', 'model: 100% (4.0 of 4.0 MiB)\n']);
    // An HTTP body without Content-Length: a line per 64 MiB.
    const u = setup(false);
    u.at(1000);
    for (const m of [10, 60, 70, 130]) u.report({ loaded: m * 2 ** 20 });
    expect(u.out).toEqual(['model: 10.0 MiB\n', 'model: 70.0 MiB\n', 'model: 130.0 MiB\n']);
  });

  test('a TTY line left open by an unfinished segment is ended before the next one', () => {
    const { out, report, at } = setup(true);
    at(1500);
    report({ loaded: 1, total: 2, file: 'a' });
    report({ loaded: 1, total: 2, file: 'b' });
    expect(out.filter((s) => s === '\n')).toHaveLength(1);
    expect(out.at(-1)).toMatch(/^\r\x1b\[Kmodel b \[/);
  });
});

/** Bytes of every tensor of a safetensors file, from its header (read here, not by the library). */
function tensorBytes(file: string): number {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
  return Object.values(header).reduce((s, t) => s + (t.data_offsets ? t.data_offsets[1] - t.data_offsets[0] : 0), 0);
}

describe('the commands hand their loads a reporter', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'peftjs-progress-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** A progress factory that records every event under its label. */
  function recorder() {
    const seen = new Map<string, ProgressEvent[]>();
    return { seen, progress: (label: string) => (p: ProgressEvent) => void (seen.get(label) ?? seen.set(label, []).get(label)!).push(p) };
  }

  test('merge: the model load (every tensor byte), the adapter load and the writing, each to its total', async () => {
    const { seen, progress } = recorder();
    const r = await mergeCheckpoint({ model: `${PYCODER}/base`, adapter: `${PYCODER}/adapter`, out: join(tmp, 'merged'), maxShardBytes: 6e6, progress });
    expect([...seen.keys()].sort()).toEqual(['adapter', 'model', 'write']);
    const model = seen.get('model')!;
    expect(model.at(-1)).toEqual({ loaded: tensorBytes(`${PYCODER}/base/model.safetensors`), total: tensorBytes(`${PYCODER}/base/model.safetensors`), file: 'model.safetensors' });
    expect(model.every((p, i) => i === 0 || p.loaded >= model[i - 1]!.loaded)).toBe(true);
    const adapter = seen.get('adapter')!;
    expect(adapter.at(-1)!.loaded).toBe(adapter.at(-1)!.total);
    const write = seen.get('write')!;
    expect(write.at(-1)).toEqual({ loaded: r.bytes, total: r.bytes, file: r.files.find((f) => f.startsWith('model-00002-of-')) });
    expect(new Set(write.map((p) => p.file))).toEqual(new Set(r.files.filter((f) => f.endsWith('.safetensors'))));
  });

  test('convert: the adapter load', async () => {
    const { seen, progress } = recorder();
    await convertAdapter(`${PYCODER}/adapter`, 'mlx', join(tmp, 'mlx'), { progress });
    const events = seen.get('adapter')!;
    expect(events.at(-1)!.loaded).toBe(readFileSync(`${PYCODER}/adapter/adapter_model.safetensors`).byteLength);
  });

  test('peftjs inspect --full over a slow server (not a TTY): plain progress lines on stderr, the report on stdout', async () => {
    // The weights answer after 1.2 s, so every weight byte arrives after the reporter's first second.
    const server = createServer((req, res) => {
      const file = join(PYCODER, 'adapter', (req.url ?? '/').split('/').pop()!);
      let body: Buffer;
      try {
        body = readFileSync(file);
      } catch {
        res.writeHead(404).end();
        return;
      }
      const send = () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.byteLength }).end(body);
      if (file.endsWith('.safetensors')) setTimeout(send, 1200);
      else send();
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/adapter/`;
    try {
      const child = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'inspect', url, '--full'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((ok) => child.on('close', ok));
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/^PEFT adapter "default": \d+ LoRA modules/);
      const lines = stderr.split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) expect(l).toMatch(/^adapter: (\d+% \(\d+\.\d of \d+\.\d MiB\)|\d+\.\d MiB)$/);
      expect(lines.at(-1)).toMatch(/^adapter: 100% /);
      expect(stderr).not.toContain('\r');
    } finally {
      await new Promise<void>((ok) => server.close(() => ok()));
    }
  });
});
