import { VERSION } from '../version.js';
import { parseArgs } from './args.js';
import { DEMO_DEFAULTS, demo, type DemoOptions } from './demo.js';
import { inspect } from './inspect.js';

const HELP = `peftjs ${VERSION}: run HuggingFace PEFT LoRA adapters in JavaScript

Usage:
  peftjs [demo] [--m 8] [--k 1024] [--n 1024] [--r 16] [--alpha 32]
        LoRALinear on/off on deterministic weights: max difference, time per forward (wasm vs js)
  peftjs inspect <adapter>     load a PEFT or MLX adapter (directory or http(s) URL) and print its report
  peftjs --help | --version
`;

async function main(argv: readonly string[]): Promise<number> {
  const { positionals, options } = parseArgs(argv, ['m', 'k', 'n', 'r', 'alpha', 'seed'], ['help', 'version']);
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
      console.log(await inspect(rest[0]));
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
