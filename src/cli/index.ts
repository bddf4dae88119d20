import { VERSION } from '../version.js';
import { parseArgs } from './args.js';
import { DEMO_DEFAULTS, demo, type DemoOptions } from './demo.js';
import { inspect } from './inspect.js';
import { convertAdapter } from './convert.js';
import { mergeCheckpoint, parseSize } from './merge.js';
import { benchModel } from './bench-model.js';
import { embeddedModelDir, lmDemo } from './lm-demo.js';
import { generateCommand, type GenerateCliOptions } from './generate.js';
import { progressReporter } from './progress.js';

const HELP = `peftjs ${VERSION}: run HuggingFace PEFT LoRA adapters in JavaScript

Usage:
  peftjs [demo]                the main job: the embedded pycoder with its prose LoRA (off: code, on: prose),
                               off = base bit for bit, and speculative decoding with a LoRA drafter
  peftjs generate --model DIR|URL [--adapter DIR] --prompt TEXT [--lora on|off|both]
                  [--draft DIR --exit-after K] [--backend wasm|webgpu|js] [--max-new N]
                  [--temperature T] [--top-k K] [--top-p P] [--seed S]
                               stream a continuation with a live tokens/s line
  peftjs bench-model [--model DIR] [--draft DIR --exit-after K] [--max-new N]
                               prefill and decode tokens/s, plain and speculative
  peftjs layer-demo [--m 8] [--k 1024] [--n 1024] [--r 16] [--alpha 32]
                               one LoRALinear on/off: max difference, time per forward (wasm vs js)
  peftjs inspect <adapter> [--json] [--full]
                               what a PEFT or MLX adapter (directory, http(s) URL or hf://owner/repo[@rev])
                               holds, from its headers alone; --json for scripts, --full to load and validate
  peftjs convert <adapter> --to peft|mlx --out DIR
                               rewrite an adapter in the other format
  peftjs merge --model DIR --adapter DIR --out DIR [--max-shard-size 5GB]
                               fold the adapter into the model's weights: a plain HF checkpoint
  peftjs --help | --version
`;

async function main(argv: readonly string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    ['m', 'k', 'n', 'r', 'alpha', 'seed', 'model', 'adapter', 'prompt', 'lora', 'draft', 'exit-after', 'backend', 'max-new', 'temperature', 'top-k', 'top-p', 'to', 'out', 'max-shard-size'],
    ['help', 'version', 'json', 'full'],
  );
  const str = (k: string) => (typeof options[k] === 'string' ? (options[k] as string) : undefined);
  const num = (k: string, int = true) => {
    const v = str(k);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x) || (int && !Number.isInteger(x)) || x < 0) throw new Error(`--${k} must be a ${int ? 'non-negative integer' : 'non-negative number'}, got ${v}`);
    return x;
  };
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
      const r = await lmDemo();
      return r.lossless && r.offIsBase ? 0 : 1;
    }
    case 'generate': {
      const lora = str('lora') ?? 'on';
      if (!['on', 'off', 'both'].includes(lora)) throw new Error(`--lora must be on, off or both, got ${lora}`);
      const backend = str('backend') ?? 'wasm';
      if (!['wasm', 'webgpu', 'js'].includes(backend)) throw new Error(`--backend must be wasm, webgpu or js, got ${backend}`);
      const prompt = str('prompt');
      if (prompt === undefined) throw new Error('generate needs --prompt TEXT (see peftjs --help)');
      const o: GenerateCliOptions = {
        model: str('model') ?? `${embeddedModelDir()}base`,
        adapter: str('adapter'),
        prompt,
        lora: lora as GenerateCliOptions['lora'],
        draft: str('draft'),
        exitAfter: num('exit-after'),
        backend: backend as GenerateCliOptions['backend'],
        maxNew: num('max-new') ?? 64,
        temperature: num('temperature', false),
        topK: num('top-k'),
        topP: num('top-p', false),
        seed: num('seed'),
      };
      await generateCommand(o);
      return 0;
    }
    case 'bench-model': {
      await benchModel({ model: str('model'), draft: str('draft'), exitAfter: num('exit-after'), tokens: num('max-new') });
      return 0;
    }
    case 'layer-demo': {
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
      console.log(await inspect(rest[0], { json: options.json === true, full: options.full === true, progress: progressReporter }));
      return 0;
    }
    case 'convert': {
      const { to, out } = options;
      if (!rest[0] || typeof to !== 'string' || typeof out !== 'string') throw new Error('convert needs <adapter> --to peft|mlx --out DIR (see peftjs --help)');
      const r = await convertAdapter(rest[0], to, out, { progress: progressReporter });
      console.log(`wrote a ${r.format.toUpperCase()} adapter (${r.modules} LoRA modules) to ${out}: ${r.files.join(', ')}`);
      return 0;
    }
    case 'merge': {
      const { model, adapter, out } = options;
      if (typeof model !== 'string' || typeof adapter !== 'string' || typeof out !== 'string') throw new Error('merge needs --model DIR --adapter DIR --out DIR (see peftjs --help)');
      const max = options['max-shard-size'];
      const r = await mergeCheckpoint({ model, adapter, out, maxShardBytes: typeof max === 'string' ? parseSize(max) : undefined, progress: progressReporter });
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
