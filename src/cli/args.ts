/** A tiny argv parser: `--name value`, `--name=value`, `--flag`, and positionals. Unknown options are errors. */
export interface ParsedArgs {
  positionals: string[];
  options: Record<string, string | true>;
}

export function parseArgs(argv: readonly string[], known: readonly string[], flags: readonly string[]): ParsedArgs {
  const positionals: string[] = [];
  const options: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    const [rawName, inline] = a.replace(/^--?/, '').split(/=(.*)/s, 2) as [string, string | undefined];
    const name = rawName === 'h' ? 'help' : rawName === 'v' ? 'version' : rawName;
    if (flags.includes(name)) {
      options[name] = true;
    } else if (known.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new Error(`option --${name} needs a value`);
      options[name] = value;
    } else {
      throw new Error(`unknown option ${a} (see peftjs --help)`);
    }
  }
  return { positionals, options };
}
