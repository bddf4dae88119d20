/** One progress report of a loader (`onProgress`): bytes so far, the total when known, and the file being read. */
export interface ProgressEvent {
  loaded: number;
  total?: number;
  file?: string;
}

/** Where progress is written: stderr, or anything with `write` (tests). */
export interface ProgressSink {
  isTTY?: boolean;
  write(s: string): unknown;
}

/** Makes the reporter of one labelled load (`progressReporter` fits): what `inspect --full`, `convert`, `merge` take. */
export type ProgressFactory = (label: string) => (p: ProgressEvent) => void;

const MiB = 2 ** 20;
const mib = (n: number) => (n / MiB).toFixed(1);
/** Without a known total, a plain line per this many bytes. */
const UNKNOWN_STEP = 64 * MiB;

/**
 * Progress of one load on stderr, shown only once the load has run for a second (a fast load prints nothing):
 * on a TTY a bar redrawn in place (ended by a newline at 100 %), otherwise plain lines at each 25 % (every 64 MiB
 * when the total is unknown). A new segment (another file, or bytes counting from zero again: an adapter's weights
 * after its config) starts its own line. `now` is the clock (tests pass their own).
 */
export function progressReporter(label: string, err: ProgressSink = process.stderr, now: () => number = Date.now): (p: ProgressEvent) => void {
  const t0 = now();
  let live = false;
  let open = false; // a TTY line drawn and not yet ended
  let file: string | undefined;
  let lastLoaded = -1;
  let lastStep = -1;
  return (p) => {
    if (p.file !== file || p.loaded < lastLoaded) {
      if (open) err.write('\n');
      open = false;
      lastStep = -1;
      file = p.file;
    }
    lastLoaded = p.loaded;
    if (!live && now() - t0 < 1000) return;
    live = true;
    const name = p.file ? `${label} ${p.file}` : label;
    const known = p.total !== undefined && p.total > 0;
    const frac = known ? Math.min(1, p.loaded / p.total!) : undefined;
    const amount = known ? `${mib(p.loaded)} of ${mib(p.total!)} MiB` : `${mib(p.loaded)} MiB`;
    if (err.isTTY) {
      const w = 30;
      const fill = Math.round((frac ?? 0) * w);
      const bar = frac === undefined ? '' : `[${'█'.repeat(fill)}${' '.repeat(w - fill)}] ${(frac * 100).toFixed(0)}% `;
      err.write(`\r\x1b[K${name} ${bar}${amount}`);
      open = frac !== 1;
      if (!open) err.write('\n');
    } else {
      const step = frac === undefined ? Math.floor(p.loaded / UNKNOWN_STEP) : Math.floor(frac * 4);
      if (step > lastStep) {
        lastStep = step;
        err.write(`${name}: ${frac === undefined ? '' : `${(frac * 100).toFixed(0)}% (`}${amount}${frac === undefined ? '' : ')'}\n`);
      }
    }
  };
}
