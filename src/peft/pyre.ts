/**
 * Python `re` patterns, as PEFT users write them in adapter_config.json, parsed with Python's rules and matched
 * in linear time.
 *
 * PEFT matches module names with Python's `re` (`re.fullmatch` for a string `target_modules` / `exclude_modules`,
 * `re.match(rf"(.*\.)?({key})$")` for `rank_pattern` / `alpha_pattern` keys, `re.match(rf".*?\.{pattern}\.(\d+)\.")`
 * for `layers_pattern`). JavaScript's RegExp differs in syntax (`\Z`, `\A` are the letters Z and A there, `(?i)` is
 * a syntax error, `[]a]` means "nothing, then a]") and backtracks: `(a+)+` against 41 characters runs for minutes.
 * So patterns are parsed here with CPython 3.11+'s `sre_parse` rules (same accepted syntax, same errors for what
 * Python rejects) and run on a Pike VM (Thompson NFA simulation with thread priorities): O(|text| · |program|)
 * steps, the same leftmost-first answer and group captures as Python's backtracking matcher, and a step budget.
 *
 * Refused, with a {@link PyRegexError} naming the construct: what Python refuses (bad escapes, "nothing to
 * repeat", unbalanced parentheses, global flags not at the start, variable-width look-behind, …), and the few
 * constructs whose meaning needs backtracking or a table we do not ship: backreferences (`\1`, `(?P=name)`),
 * conditionals `(?(1)…)`, atomic groups `(?>…)`, possessive quantifiers (`a*+`), `\N{NAME}`, the LOCALE flag.
 * Stricter than Python: a pattern of more than {@link PY_RE_LIMITS.sourceLength} characters, or one that compiles
 * to more than {@link PY_RE_LIMITS.program} VM instructions (counted repeats are expanded), is refused.
 */

/** A pattern Python would reject, or one we cannot run exactly. `construct` names the offending piece. */
export class PyRegexError extends Error {
  constructor(
    readonly problem: string,
    readonly construct: string,
    readonly pos: number,
  ) {
    super(`${problem}: ${construct} at position ${pos}`);
  }
}

/** Thrown by a match that used up its step budget. */
export class PyRegexBudgetError extends Error {}

export const PY_RE_LIMITS = {
  /** Longest pattern source accepted (code points). */
  sourceLength: 4096,
  /** Most VM instructions one pattern may compile to (after expanding `{m,n}`). */
  program: 10_000,
};

/** Steps left for every match that shares this object (one per load). */
export interface PyBudget {
  steps: number;
}

// ---------------------------------------------------------------------------------------------------------------
// AST

type ClassItem = { lo: number; hi: number } | { cat: Cat };
type Cat = 'd' | 'D' | 'w' | 'W' | 's' | 'S';
type AssertKind = 'bol' | 'eol' | 'bot' | 'eot' | 'wb' | 'nwb';

type Node =
  | { t: 'char'; cp: number; fold: boolean }
  | { t: 'any'; dotall: boolean }
  | { t: 'class'; neg: boolean; items: ClassItem[]; fold: boolean; ascii: boolean }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; items: Node[] }
  | { t: 'group'; cap: number | null; body: Node }
  | { t: 'repeat'; body: Node; min: number; max: number; greedy: boolean }
  | { t: 'assert'; kind: AssertKind; multiline: boolean; ascii: boolean }
  | { t: 'look'; body: Node; behind: boolean; neg: boolean };

interface Flags {
  i: boolean;
  s: boolean;
  m: boolean;
  x: boolean;
  a: boolean;
}

const HEX = /^[0-9a-fA-F]$/;
const ASCII_LETTER = /^[A-Za-z]$/;
const DIGIT = /^[0-9]$/;
const OCT = /^[0-7]$/;
/** Python's one-letter escapes (`sre_parse.ESCAPES`). */
const SIMPLE_ESCAPES: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92 };
const MAX_REPEAT = 4294967295; // CPython's MAXREPEAT on 64-bit builds: larger counts are an OverflowError there.

class Parser {
  private readonly s: string[];
  private p = 0;
  groups = 0;
  private readonly names = new Set<string>();

  constructor(source: string, private flags: Flags) {
    this.s = Array.from(source);
  }

  private fail(problem: string, construct: string, at = this.p): never {
    throw new PyRegexError(problem, construct, at);
  }
  private get next(): string | undefined {
    return this.s[this.p];
  }
  private eat(c: string): boolean {
    if (this.s[this.p] === c) {
      this.p++;
      return true;
    }
    return false;
  }

  parse(): Node {
    const node = this.alternation(true);
    if (this.p < this.s.length) {
      // Only a stray ')' stops the top level early.
      this.fail('unbalanced parenthesis', ')');
    }
    return node;
  }

  private alternation(top: boolean): Node {
    const branches: Node[] = [this.sequence(top)];
    while (this.eat('|')) branches.push(this.sequence(false));
    return branches.length === 1 ? branches[0]! : { t: 'alt', items: branches };
  }

  /** One branch: items up to `|`, `)` or the end. `first`: the top level's first branch (global flags allowed). */
  private sequence(first: boolean): Node {
    const items: Node[] = [];
    for (;;) {
      const c = this.next;
      if (c === undefined || c === '|' || c === ')') break;
      const start = this.p;
      this.p++;
      if (this.flags.x) {
        if (' \t\n\r\v\f'.includes(c)) continue;
        if (c === '#') {
          while (this.next !== undefined && this.next !== '\n') this.p++;
          continue;
        }
      }
      if (c === '*' || c === '+' || c === '?' || c === '{') {
        let min: number;
        let max: number;
        if (c === '{') {
          const q = this.braces();
          if (!q) {
            items.push(this.literal(c.codePointAt(0)!));
            continue;
          }
          [min, max] = q;
        } else [min, max] = c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
        const item = items[items.length - 1];
        if (!item || item.t === 'assert') this.fail('nothing to repeat', this.s.slice(start, this.p).join(''), start);
        if (item.t === 'repeat') this.fail('multiple repeat', this.s.slice(start, this.p).join(''), start);
        let greedy = true;
        if (this.eat('?')) greedy = false;
        else if (this.next === '+') this.fail('possessive quantifiers are not supported (they need backtracking control)', this.s.slice(start, this.p + 1).join(''), start);
        items[items.length - 1] = { t: 'repeat', body: item, min, max, greedy };
        continue;
      }
      if (c === '.') items.push({ t: 'any', dotall: this.flags.s });
      else if (c === '^') items.push({ t: 'assert', kind: 'bol', multiline: this.flags.m, ascii: this.flags.a });
      else if (c === '$') items.push({ t: 'assert', kind: 'eol', multiline: this.flags.m, ascii: this.flags.a });
      else if (c === '[') items.push(this.charClass(start));
      else if (c === '\\') items.push(this.escape(start));
      else if (c === '(') {
        const g = this.group(start, first && items.length === 0);
        if (g) items.push(g);
      } else items.push(this.literal(c.codePointAt(0)!));
    }
    return items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  private literal(cp: number): Node {
    return { t: 'char', cp, fold: this.flags.i };
  }

  /** `{m}`, `{m,}`, `{,n}`, `{m,n}` after the `{`; undefined (and nothing consumed) when it is a literal `{`. */
  private braces(): [number, number] | undefined {
    const here = this.p;
    if (this.next === '}') return undefined;
    let lo = '';
    let hi = '';
    while (this.next !== undefined && DIGIT.test(this.next)) lo += this.s[this.p++];
    if (this.eat(',')) {
      while (this.next !== undefined && DIGIT.test(this.next)) hi += this.s[this.p++];
    } else hi = lo;
    if (!this.eat('}')) {
      this.p = here;
      return undefined;
    }
    const min = lo ? Number(lo) : 0;
    const max = hi ? Number(hi) : Infinity;
    if (min >= MAX_REPEAT || (max !== Infinity && max >= MAX_REPEAT)) this.fail('the repetition number is too large', `{${lo},${hi}}`, here - 1);
    if (max < min) this.fail('min repeat greater than max repeat', `{${lo},${hi}}`, here - 1);
    return [min, max];
  }

  private group(start: number, atStart: boolean): Node | undefined {
    let cap: number | null = null;
    if (this.eat('?')) {
      const c = this.s[this.p++];
      if (c === ':') cap = null;
      else if (c === 'P') {
        if (this.eat('<')) {
          const name = this.groupName('>', start);
          if (this.names.has(name)) this.fail('redefinition of group name', name, start);
          this.names.add(name);
          cap = ++this.groups;
        } else if (this.eat('=')) {
          this.fail('backreferences are not supported (they cannot be matched in linear time)', `(?P=${this.groupName(')', start)})`, start);
        } else this.fail('unknown extension', `?P${this.next ?? ''}`, start);
      } else if (c === '=' || c === '!') {
        return this.lookaround(start, false, c === '!');
      } else if (c === '<') {
        const d = this.s[this.p++];
        if (d === '=' || d === '!') return this.lookaround(start, true, d === '!');
        this.fail('unknown extension', `?<${d ?? ''}`, start);
      } else if (c === '#') {
        while (this.next !== undefined && this.next !== ')') this.p++;
        if (!this.eat(')')) this.fail('missing ), unterminated comment', '(?#', start);
        return undefined;
      } else if (c === '>') {
        this.fail('atomic groups are not supported (they need backtracking control)', '(?>', start);
      } else if (c === '(') {
        this.fail('conditional groups are not supported', '(?(', start);
      } else if (c !== undefined && ('aiLmsux-'.includes(c))) {
        return this.flagGroup(start, c, atStart);
      } else this.fail('unknown extension', `?${c ?? ''}`, start);
    } else cap = ++this.groups;
    const body = this.alternation(false);
    if (!this.eat(')')) this.fail('missing ), unterminated subpattern', this.s.slice(start, Math.min(this.s.length, start + 12)).join(''), start);
    return { t: 'group', cap, body };
  }

  private groupName(end: string, start: number): string {
    let name = '';
    while (this.next !== undefined && this.next !== end) name += this.s[this.p++];
    if (!this.eat(end)) this.fail('missing group name terminator', end, start);
    if (!/^[\p{L}_][\p{L}\p{N}_]*$/u.test(name)) this.fail('bad character in group name', name, start);
    return name;
  }

  private lookaround(start: number, behind: boolean, neg: boolean): Node {
    const body = this.alternation(false);
    if (!this.eat(')')) this.fail('missing ), unterminated subpattern', behind ? '(?<' : '(?', start);
    if (behind) {
      const [lo, hi] = width(body);
      if (lo !== hi) this.fail('look-behind requires fixed-width pattern', this.s.slice(start, this.p).join(''), start);
    }
    return { t: 'look', body, behind, neg };
  }

  /** `(?aiLmsux)` (global, only at the start of the pattern) or `(?aiLmsux-imsx:…)` (scoped). */
  private flagGroup(start: number, firstChar: string, atStart: boolean): Node | undefined {
    const on = new Set<string>();
    const off = new Set<string>();
    let c: string | undefined = firstChar;
    let minus = false;
    for (;;) {
      if (c === '-') {
        if (minus) this.fail('unknown flag', '-', this.p - 1);
        minus = true;
      } else if (c !== undefined && 'aiLmsux'.includes(c)) {
        if (c === 'L') this.fail("bad inline flags: cannot use 'L' flag with a str pattern", '(?L', start);
        if (minus && 'au'.includes(c)) this.fail("bad inline flags: cannot turn off flags 'a', 'u' and 'L'", `-${c}`, this.p - 1);
        (minus ? off : on).add(c);
      } else break;
      c = this.s[this.p++];
    }
    if (on.has('a') && on.has('u')) this.fail("bad inline flags: flags 'a', 'u' and 'L' are incompatible", 'au', start);
    if (c === ')') {
      if (minus) this.fail('missing :', this.s.slice(start, this.p).join(''), start);
      if (!atStart) this.fail('global flags not at the start of the expression', this.s.slice(start, this.p).join(''), start);
      this.apply(on, new Set());
      return undefined;
    }
    if (c !== ':') this.fail(c === undefined ? 'missing -, : or )' : 'unknown flag', c ?? this.s.slice(start).join(''), this.p - 1);
    const saved = { ...this.flags };
    this.apply(on, off);
    const body = this.alternation(false);
    this.flags = saved;
    if (!this.eat(')')) this.fail('missing ), unterminated subpattern', this.s.slice(start, this.p).join(''), start);
    return { t: 'group', cap: null, body };
  }

  private apply(on: Set<string>, off: Set<string>): void {
    for (const f of ['i', 's', 'm', 'x', 'a'] as const) {
      if (on.has(f)) this.flags[f] = true;
      if (off.has(f)) this.flags[f] = false;
    }
    if (on.has('u')) this.flags.a = false;
  }

  /** An escape outside a class (`sre_parse._escape`). */
  private escape(start: number): Node {
    const c = this.s[this.p++];
    if (c === undefined) this.fail('bad escape (end of pattern)', '\\', start);
    const code = this.codeEscape(c, start, false);
    if (code !== undefined) return this.literal(code);
    switch (c) {
      case 'A':
        return { t: 'assert', kind: 'bot', multiline: false, ascii: this.flags.a };
      case 'Z':
      case 'z': // Python 3.14 spelling of \Z
        return { t: 'assert', kind: 'eot', multiline: false, ascii: this.flags.a };
      case 'b':
        return { t: 'assert', kind: 'wb', multiline: false, ascii: this.flags.a };
      case 'B':
        return { t: 'assert', kind: 'nwb', multiline: false, ascii: this.flags.a };
      case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        return { t: 'class', neg: false, items: [{ cat: c }], fold: false, ascii: this.flags.a };
    }
    if (DIGIT.test(c)) {
      // \0, \0o, \0oo and \ooo are octal; any other digit escape is a group reference.
      if (c === '0' || (OCT.test(c) && OCT.test(this.next ?? '') && OCT.test(this.s[this.p + 1] ?? ''))) {
        let digits = c;
        while (digits.length < 3 && OCT.test(this.next ?? '')) digits += this.s[this.p++];
        const v = parseInt(digits, 8);
        if (v > 0o377) this.fail('octal escape value outside of range 0-0o377', `\\${digits}`, start);
        return this.literal(v);
      }
      let ref = c;
      if (DIGIT.test(this.next ?? '')) ref += this.s[this.p++];
      this.fail('backreferences are not supported (they cannot be matched in linear time)', `\\${ref}`, start);
    }
    if (ASCII_LETTER.test(c)) this.fail('bad escape', `\\${c}`, start);
    return this.literal(c.codePointAt(0)!);
  }

  /** Escapes that stand for one code point in and out of classes: \xhh \uhhhh \Uhhhhhhhh \a \f \n \r \t \v \\ (and \b in a class). */
  private codeEscape(c: string, start: number, inClass: boolean): number | undefined {
    const hex = (n: number, name: string) => {
      let h = '';
      while (h.length < n && HEX.test(this.next ?? '')) h += this.s[this.p++];
      if (h.length < n) this.fail('incomplete escape', `\\${name}${h}`, start);
      return parseInt(h, 16);
    };
    if (c === 'x') return hex(2, 'x');
    if (c === 'u') return hex(4, 'u');
    if (c === 'U') {
      const v = hex(8, 'U');
      if (v > 0x10ffff) this.fail('bad escape', `\\U${v.toString(16).padStart(8, '0')}`, start);
      return v;
    }
    if (c === 'N') this.fail('named Unicode escapes are not supported', '\\N{…}', start);
    if (c === 'b') return inClass ? 8 : undefined;
    if (c in SIMPLE_ESCAPES) return SIMPLE_ESCAPES[c];
    return undefined;
  }

  /** `[…]` after the `[` (`sre_parse`: a `]` right after `[` or `[^` is a literal). */
  private charClass(start: number): Node {
    const neg = this.eat('^');
    const items: ClassItem[] = [];
    const first = this.p;
    const one = (c: string): ClassItem => {
      if (c !== '\\') return { lo: c.codePointAt(0)!, hi: c.codePointAt(0)! };
      const at = this.p - 1;
      const e = this.s[this.p++];
      if (e === undefined) this.fail('unterminated character set', this.s.slice(start).join(''), start);
      const code = this.codeEscape(e, at, true);
      if (code !== undefined) return { lo: code, hi: code };
      if ('dDwWsS'.includes(e)) return { cat: e as Cat };
      if (DIGIT.test(e)) {
        if (!OCT.test(e)) this.fail('bad escape', `\\${e}`, at);
        let digits = e;
        while (digits.length < 3 && OCT.test(this.next ?? '')) digits += this.s[this.p++];
        const v = parseInt(digits, 8);
        if (v > 0o377) this.fail('octal escape value outside of range 0-0o377', `\\${digits}`, at);
        return { lo: v, hi: v };
      }
      if (ASCII_LETTER.test(e)) this.fail('bad escape', `\\${e}`, at);
      return { lo: e.codePointAt(0)!, hi: e.codePointAt(0)! };
    };
    for (;;) {
      const c = this.s[this.p++];
      if (c === undefined) this.fail('unterminated character set', this.s.slice(start).join(''), start);
      if (c === ']' && this.p - 1 !== first) break;
      const a = one(c);
      if (this.eat('-')) {
        const d = this.s[this.p++];
        if (d === undefined) this.fail('unterminated character set', this.s.slice(start).join(''), start);
        if (d === ']') {
          items.push(a, { lo: 45, hi: 45 });
          break;
        }
        const b = one(d);
        if (!('lo' in a) || !('lo' in b) || a.lo !== a.hi || b.lo !== b.hi) this.fail('bad character range', this.s.slice(start, this.p).join(''), start);
        if (b.lo < a.lo) this.fail('bad character range', `${String.fromCodePoint(a.lo)}-${String.fromCodePoint(b.lo)}`, start);
        items.push({ lo: a.lo, hi: b.lo });
      } else items.push(a);
    }
    return { t: 'class', neg, items, fold: this.flags.i, ascii: this.flags.a };
  }
}

/** Min and max width of what a node matches (`SubPattern.getwidth`), for the look-behind rule. */
function width(n: Node): [number, number] {
  switch (n.t) {
    case 'char':
    case 'any':
    case 'class':
      return [1, 1];
    case 'assert':
    case 'look':
      return [0, 0];
    case 'group':
      return width(n.body);
    case 'cat':
      return n.items.map(width).reduce(([a, b], [c, d]) => [a + c, b + d], [0, 0]);
    case 'alt': {
      const w = n.items.map(width);
      return [Math.min(...w.map((x) => x[0])), Math.max(...w.map((x) => x[1]))];
    }
    case 'repeat': {
      const [lo, hi] = width(n.body);
      return [lo * n.min, hi === 0 ? 0 : hi * n.max];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Program

const enum Op {
  Char,
  Any,
  Class,
  Split,
  Jmp,
  Save,
  Assert,
  Look,
  Match,
}

type Inst =
  | { op: Op.Char; cp: number; fold: string | undefined }
  | { op: Op.Any; dotall: boolean }
  | { op: Op.Class; node: Extract<Node, { t: 'class' }> }
  | { op: Op.Split; x: number; y: number }
  | { op: Op.Jmp; x: number }
  | { op: Op.Save; slot: number }
  | { op: Op.Assert; node: Extract<Node, { t: 'assert' }> }
  | { op: Op.Look; prog: Inst[]; behind: boolean; neg: boolean; width: number; id: number }
  | { op: Op.Match };

class Compiler {
  looks = 0;
  constructor(private readonly source: string) {}

  program(root: Node): Inst[] {
    const out: Inst[] = [];
    this.emit(root, out);
    out.push({ op: Op.Match });
    return out;
  }

  private push(out: Inst[], i: Inst): number {
    if (out.length >= PY_RE_LIMITS.program) {
      throw new PyRegexError(`the pattern compiles to more than ${PY_RE_LIMITS.program} instructions (a limit of this implementation)`, truncate(this.source), 0);
    }
    out.push(i);
    return out.length - 1;
  }

  private emit(n: Node, out: Inst[]): void {
    switch (n.t) {
      case 'char':
        this.push(out, { op: Op.Char, cp: n.cp, fold: n.fold ? fold(n.cp) : undefined });
        return;
      case 'any':
        this.push(out, { op: Op.Any, dotall: n.dotall });
        return;
      case 'class':
        this.push(out, { op: Op.Class, node: n });
        return;
      case 'assert':
        this.push(out, { op: Op.Assert, node: n });
        return;
      case 'look': {
        const prog = this.program(n.body);
        this.push(out, { op: Op.Look, prog, behind: n.behind, neg: n.neg, width: width(n.body)[0], id: this.looks++ });
        return;
      }
      case 'cat':
        for (const x of n.items) this.emit(x, out);
        return;
      case 'group':
        if (n.cap !== null) this.push(out, { op: Op.Save, slot: 2 * n.cap });
        this.emit(n.body, out);
        if (n.cap !== null) this.push(out, { op: Op.Save, slot: 2 * n.cap + 1 });
        return;
      case 'alt': {
        const jumps: Inst[] = [];
        for (let k = 0; k < n.items.length; k++) {
          if (k < n.items.length - 1) {
            const split = { op: Op.Split, x: 0, y: 0 } as Extract<Inst, { op: Op.Split }>;
            this.push(out, split);
            split.x = out.length;
            this.emit(n.items[k]!, out);
            const j = { op: Op.Jmp, x: 0 } as Extract<Inst, { op: Op.Jmp }>;
            this.push(out, j);
            jumps.push(j);
            split.y = out.length;
          } else this.emit(n.items[k]!, out);
        }
        for (const j of jumps) (j as { x: number }).x = out.length;
        return;
      }
      case 'repeat': {
        for (let k = 0; k < n.min; k++) this.emit(n.body, out);
        if (n.max === Infinity) {
          const split = { op: Op.Split, x: 0, y: 0 } as Extract<Inst, { op: Op.Split }>;
          const at = this.push(out, split);
          const body = out.length;
          this.emit(n.body, out);
          this.push(out, { op: Op.Jmp, x: at });
          const after = out.length;
          [split.x, split.y] = n.greedy ? [body, after] : [after, body];
          return;
        }
        const splits: Extract<Inst, { op: Op.Split }>[] = [];
        for (let k = n.min; k < n.max; k++) {
          const split = { op: Op.Split, x: 0, y: 0 } as Extract<Inst, { op: Op.Split }>;
          this.push(out, split);
          split.x = out.length;
          splits.push(split);
          this.emit(n.body, out);
        }
        const end = out.length;
        for (const s of splits) [s.x, s.y] = n.greedy ? [s.x, end] : [end, s.x];
        return;
      }
    }
  }
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}…` : s;
}

/** Lower-case form used for IGNORECASE comparisons (Python folds with `lower()` plus a few specials). */
function fold(cp: number): string {
  return String.fromCodePoint(cp).toLowerCase();
}

// ---------------------------------------------------------------------------------------------------------------
// Matching

const PY_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);
const UNI_WORD = /^[\p{L}\p{N}_]$/u;
const UNI_DIGIT = /^\p{Nd}$/u;

function isSpace(cp: number, ascii: boolean): boolean {
  if (ascii) return cp === 0x20 || (cp >= 0x09 && cp <= 0x0d);
  return PY_SPACE.has(cp) || (cp >= 0x2000 && cp <= 0x200a);
}
function isDigit(cp: number, ascii: boolean): boolean {
  if (cp >= 0x30 && cp <= 0x39) return true;
  return !ascii && cp > 0x7f && UNI_DIGIT.test(String.fromCodePoint(cp));
}
function isWord(cp: number, ascii: boolean): boolean {
  if ((cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) || cp === 0x5f) return true;
  return !ascii && cp > 0x7f && UNI_WORD.test(String.fromCodePoint(cp));
}
function inCat(cat: Cat, cp: number, ascii: boolean): boolean {
  switch (cat) {
    case 'd': return isDigit(cp, ascii);
    case 'D': return !isDigit(cp, ascii);
    case 'w': return isWord(cp, ascii);
    case 'W': return !isWord(cp, ascii);
    case 's': return isSpace(cp, ascii);
    case 'S': return !isSpace(cp, ascii);
  }
}
function classHas(n: Extract<Node, { t: 'class' }>, cp: number): boolean {
  const test = (c: number) => n.items.some((it) => ('cat' in it ? inCat(it.cat, c, n.ascii) : c >= it.lo && c <= it.hi));
  let hit = test(cp);
  if (!hit && n.fold) {
    const s = String.fromCodePoint(cp);
    const lo = s.toLowerCase();
    const up = s.toUpperCase();
    for (const v of [lo, up, lo.toUpperCase(), up.toLowerCase()]) {
      const c = v.codePointAt(0)!;
      if (v.length === String.fromCodePoint(c).length && c !== cp && test(c)) {
        hit = true;
        break;
      }
    }
  }
  return hit !== n.neg;
}

interface Run {
  text: readonly number[];
  budget: PyBudget;
  looks: Map<number, boolean>;
  source: string;
}

function assertHolds(n: Extract<Node, { t: 'assert' }>, text: readonly number[], pos: number): boolean {
  const len = text.length;
  switch (n.kind) {
    case 'bot':
      return pos === 0;
    case 'eot':
      return pos === len;
    case 'bol':
      return pos === 0 || (n.multiline && text[pos - 1] === 10);
    case 'eol':
      // Python's `$` also matches before a newline that ends the string.
      return pos === len || (n.multiline ? text[pos] === 10 : pos === len - 1 && text[pos] === 10);
    case 'wb':
    case 'nwb': {
      const before = pos > 0 && isWord(text[pos - 1]!, n.ascii);
      const after = pos < len && isWord(text[pos]!, n.ascii);
      return (before !== after) === (n.kind === 'wb');
    }
  }
}

/**
 * Runs `prog` on `run.text` from `start`, Pike-VM style: a list of threads in priority order advances one code point
 * at a time; each program counter is added once per position, so a step costs at most |prog| thread moves.
 * `fullEnd`: the match must end exactly there (fullmatch, or a look-behind's window); otherwise the first match in
 * priority order wins (`re.match`). Returns the capture slots of the winning thread, or null.
 */
function pike(prog: readonly Inst[], run: Run, start: number, fullEnd: number | undefined, nslots: number): (number | undefined)[] | null {
  const text = run.text;
  const limit = fullEnd ?? text.length;
  const mark = new Int32Array(prog.length).fill(-1);
  let clist: { pc: number; caps: (number | undefined)[] }[] = [];
  let nlist: typeof clist = [];
  let matched: (number | undefined)[] | null = null;

  const add = (list: typeof clist, pc0: number, caps0: (number | undefined)[], pos: number, gen: number) => {
    // Explicit stack (not recursion): programs may be 10,000 instructions deep in epsilon moves.
    const stack: [number, (number | undefined)[]][] = [[pc0, caps0]];
    while (stack.length) {
      const [pc, caps] = stack.pop()!;
      if (mark[pc] === gen) continue;
      mark[pc] = gen;
      if (--run.budget.steps < 0) throw new PyRegexBudgetError(run.source);
      const i = prog[pc]!;
      switch (i.op) {
        case Op.Jmp:
          stack.push([i.x, caps]);
          break;
        case Op.Split:
          stack.push([i.y, caps], [i.x, caps]); // x is popped first: higher priority
          break;
        case Op.Save: {
          const c = caps.slice();
          c[i.slot] = pos;
          stack.push([pc + 1, c]);
          break;
        }
        case Op.Assert:
          if (assertHolds(i.node, text, pos)) stack.push([pc + 1, caps]);
          break;
        case Op.Look:
          if (look(i, run, pos) !== i.neg) stack.push([pc + 1, caps]);
          break;
        default:
          list.push({ pc, caps });
      }
    }
  };

  let gen = 0;
  add(clist, 0, new Array(nslots), start, gen++);
  for (let pos = start; ; pos++) {
    const cp = pos < limit ? text[pos] : undefined;
    const g = gen++;
    for (const th of clist) {
      const i = prog[th.pc]!;
      if (i.op === Op.Match) {
        if (fullEnd !== undefined && pos !== fullEnd) continue;
        matched = th.caps;
        break; // lower-priority threads lose to this match
      }
      if (cp === undefined) continue;
      if (--run.budget.steps < 0) throw new PyRegexBudgetError(run.source);
      let ok: boolean;
      if (i.op === Op.Char) ok = i.fold === undefined ? cp === i.cp : cp === i.cp || fold(cp) === i.fold;
      else if (i.op === Op.Any) ok = i.dotall || cp !== 10;
      else if (i.op === Op.Class) ok = classHas(i.node, cp);
      else ok = false;
      if (ok) add(nlist, th.pc + 1, th.caps, pos + 1, g);
    }
    if (cp === undefined || !nlist.length) break;
    [clist, nlist] = [nlist, []];
  }
  return matched;
}

/**
 * {@link pike} without captures: whether any thread reaches Match (at `fullEnd` when given). Thread lists are
 * typed arrays of program counters, so a step allocates nothing; this is the path every yes/no question takes.
 */
function pikeBool(prog: readonly Inst[], run: Run, start: number, fullEnd: number | undefined): boolean {
  const text = run.text;
  const limit = fullEnd ?? text.length;
  const n = prog.length;
  const mark = new Int32Array(n).fill(-1);
  let clist = new Int32Array(n);
  let nlist = new Int32Array(n);
  let ccount = 0;
  let ncount = 0;
  const stack = new Int32Array(n + 1);
  const budget = run.budget;

  const add = (list: Int32Array, count: number, pc0: number, pos: number, gen: number): number => {
    let sp = 0;
    stack[sp++] = pc0;
    while (sp) {
      const pc = stack[--sp]!;
      if (mark[pc] === gen) continue;
      mark[pc] = gen;
      if (--budget.steps < 0) throw new PyRegexBudgetError(run.source);
      const i = prog[pc]!;
      switch (i.op) {
        case Op.Jmp:
          stack[sp++] = i.x;
          break;
        case Op.Split:
          stack[sp++] = i.y;
          stack[sp++] = i.x;
          break;
        case Op.Save:
          stack[sp++] = pc + 1;
          break;
        case Op.Assert:
          if (assertHolds(i.node, text, pos)) stack[sp++] = pc + 1;
          break;
        case Op.Look:
          if (look(i, run, pos) !== i.neg) stack[sp++] = pc + 1;
          break;
        default:
          list[count++] = pc;
      }
    }
    return count;
  };

  let gen = 0;
  ccount = add(clist, 0, 0, start, gen++);
  for (let pos = start; ; pos++) {
    const cp = pos < limit ? text[pos] : undefined;
    const g = gen++;
    ncount = 0;
    for (let k = 0; k < ccount; k++) {
      const pc = clist[k]!;
      const i = prog[pc]!;
      if (i.op === Op.Match) {
        if (fullEnd === undefined || pos === fullEnd) return true;
        continue;
      }
      if (cp === undefined) continue;
      if (--budget.steps < 0) throw new PyRegexBudgetError(run.source);
      let ok: boolean;
      if (i.op === Op.Char) ok = i.fold === undefined ? cp === i.cp : cp === i.cp || fold(cp) === i.fold;
      else if (i.op === Op.Any) ok = i.dotall || cp !== 10;
      else if (i.op === Op.Class) ok = classHas(i.node, cp);
      else ok = false;
      if (ok) ncount = add(nlist, ncount, pc + 1, pos + 1, g);
    }
    if (cp === undefined || !ncount) return false;
    [clist, nlist] = [nlist, clist];
    ccount = ncount;
  }
}

function look(i: Extract<Inst, { op: Op.Look }>, run: Run, pos: number): boolean {
  const key = i.id * (run.text.length + 1) + pos;
  const memo = run.looks.get(key);
  if (memo !== undefined) return memo;
  let hit: boolean;
  if (i.behind) hit = pos >= i.width && pikeBool(i.prog, run, pos - i.width, pos);
  else hit = pikeBool(i.prog, run, pos, undefined);
  run.looks.set(key, hit);
  return hit;
}

/** A compiled Python pattern. */
export class PyRegex {
  private readonly prog: Inst[];
  /** Number of capturing groups. */
  readonly groups: number;
  /**
   * The longest run of literal characters every match must contain (from the pattern's mandatory sequence):
   * a text without it cannot match, which `match` / `fullmatch` check before running the VM.
   */
  readonly required: string;

  private constructor(readonly source: string, prog: Inst[], groups: number, required: string) {
    this.prog = prog;
    this.groups = groups;
    this.required = required;
  }

  /** Compiles `source` with Python 3.11+ `re` syntax (no flags argument: inline flags only, as in configs). */
  static compile(source: string): PyRegex {
    if (source.length > PY_RE_LIMITS.sourceLength) {
      throw new PyRegexError(`the pattern is longer than ${PY_RE_LIMITS.sourceLength} characters (a limit of this implementation)`, truncate(source), 0);
    }
    const parser = new Parser(source, { i: false, s: false, m: false, x: false, a: false });
    const root = parser.parse();
    return new PyRegex(source, new Compiler(source).program(root), parser.groups, requiredLiteral(root));
  }

  /** `re.match(p, text)` (anchored at the start); with `full`, `re.fullmatch`. Group spans as [start, end) in code points. */
  exec(text: string, budget: PyBudget, full = false): { group(n: number): string | undefined } | null {
    const cps = Array.from(text, (c) => c.codePointAt(0)!);
    const run: Run = { text: cps, budget, looks: new Map(), source: this.source };
    const caps = pike(this.prog, run, 0, full ? cps.length : undefined, 2 * (this.groups + 1));
    if (!caps) return null;
    return {
      group: (n: number) => {
        const a = caps[2 * n];
        const b = caps[2 * n + 1];
        return a === undefined || b === undefined ? undefined : String.fromCodePoint(...cps.slice(a, b));
      },
    };
  }

  /** `bool(re.match(p, text))`. */
  match(text: string, budget: PyBudget): boolean {
    return this.test(text, budget, false);
  }

  /** `bool(re.fullmatch(p, text))`. */
  fullmatch(text: string, budget: PyBudget): boolean {
    return this.test(text, budget, true);
  }

  private test(text: string, budget: PyBudget, full: boolean): boolean {
    if (this.required && !text.includes(this.required)) return false;
    const cps = Array.from(text, (c) => c.codePointAt(0)!);
    return pikeBool(this.prog, { text: cps, budget, looks: new Map(), source: this.source }, 0, full ? cps.length : undefined);
  }
}

/**
 * The longest run of case-sensitive literal characters in the pattern's mandatory sequence: the top-level
 * concatenation with groups flattened; repeats, alternations, classes, assertions and look-arounds end a run.
 */
function requiredLiteral(root: Node): string {
  let best = '';
  let cur = '';
  const end = () => {
    if (cur.length > best.length) best = cur;
    cur = '';
  };
  const walk = (n: Node) => {
    if (n.t === 'char' && !n.fold) cur += String.fromCodePoint(n.cp);
    else if (n.t === 'cat') n.items.forEach(walk);
    else if (n.t === 'group') walk(n.body);
    else if (n.t === 'repeat' && n.min === 1 && n.max === 1) walk(n.body);
    else end();
  };
  walk(root);
  end();
  return best;
}
