import { VERSION } from '../version.js';
import { parseArgs } from './args.js';
import { DEMO_DEFAULTS, demo, type DemoOptions } from './demo.js';
import { inspect } from './inspect.js';
import { convertAdapter } from './convert.js';
import { mergeCheckpoint, parseSize } from './merge.js';

const HELP = `peftjs ${VERSION}: run HuggingFace PEFT LoRA adapters in JavaScript

Usage:
  peftjs [demo] [--m 8] [--k 1024] [--n 1024] [--r 16] [--alpha 32]
        LoRALinear on/off on deterministic weights: max difference, time per forward (wasm vs js)
  peftjs inspect <adapter> [--json] [--full]
        what a PEFT or MLX adapter (directory, http(s) URL or hf://owner/repo[@rev]) holds, from its headers
        alone; --json for scripts, --full to load and validate every tensor
  peftjs convert <adapter> --to peft|mlx --out DIR
        rewrite an adapter in the other format
  peftjs merge --model DIR --adapter DIR --out DIR [--max-shard-size 5GB]
        fold the adapter into the model's weights: a plain HF checkpoint (safetensors + config.json)
  peftjs --help | --version
`;

async function main(argv: readonly string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    ['m', 'k', 'n', 'r', 'alpha', 'seed', 'to', 'out', 'model', 'adapter', 'max-shard-size'],
    ['help', 'version', 'json', 'full'],
  );
  if (options.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (options.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const [command = 'demo', ...rest] = positionals;
  switch (command) {
    case 'demo': {
      const o: DemoOptions = { ...DEMO_DEFAULTS };
      for (const key of Object.keys(DEMO_DEFAULTS) as (keyof DemoOptions)[]) {
        const v = options[key];
        if (typeof v === 'string') {
          const num = Number(v);
          if (!Number.isInteger(num) || num <= 0) throw new Error(`--${key} must be a positive integer, got ${v}`);
          o[key] = num;
        }
      }
      console.log(await demo(o));
      return 0;
    }
    case 'inspect': {
      if (!rest[0]) throw new Error('inspect needs an adapter directory or URL (see peftjs --help)');
      console.log(await inspect(rest[0], { json: options.json === true, full: options.full === true }));
      return 0;
    }
    case 'convert': {
      const { to, out } = options;
      if (!rest[0] || typeof to !== 'string' || typeof out !== 'string') throw new Error('convert needs <adapter> --to peft|mlx --out DIR (see peftjs --help)');
      const r = await convertAdapter(rest[0], to, out);
      console.log(`wrote a ${r.format.toUpperCase()} adapter (${r.modules} LoRA modules) to ${out}: ${r.files.join(', ')}`);
      return 0;
    }
    case 'merge': {
      const { model, adapter, out } = options;
      if (typeof model !== 'string' || typeof adapter !== 'string' || typeof out !== 'string') throw new Error('merge needs --model DIR --adapter DIR --out DIR (see peftjs --help)');
      const max = options['max-shard-size'];
      const r = await mergeCheckpoint({ model, adapter, out, maxShardBytes: typeof max === 'string' ? parseSize(max) : undefined });
      console.log(`merged ${r.merged.length} layers; wrote ${r.tensors} tensors (${(r.bytes / 2 ** 20).toFixed(1)} MiB) to ${out}: ${r.files.join(', ')}`);
      return 0;
    }
    default:
      throw new Error(`unknown command "${command}" (see peftjs --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`peftjs: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
