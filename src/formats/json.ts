/**
 * A strict JSON parser: the subset serde_json (what the safetensors reference reads headers with) accepts,
 * plus what makes parser differentials impossible. Differences from `JSON.parse`:
 * - nesting deeper than `maxDepth` is an error (serde_json's recursion limit: 127 levels pass, 128 fail);
 * - a key repeated inside one object is an error (JSON.parse keeps the last, serde's derived structs reject it);
 * - an escaped lone surrogate (`"\ud800"`) is an error (serde_json rejects it; JSON.parse keeps it);
 * - a number written with a fraction, an exponent or as `-0` is returned as a `JsonFloat`, so a reader that
 *   wants an integer (serde's `usize`) can refuse `1.0`, `1e0` and `-0`;
 * - a key such as `__proto__` is an own property like any other (never the prototype setter); read keys with
 *   `Object.hasOwn`-style checks, as `toString` is inherited by every object.
 * Grammar: RFC 8259.
 */

/** A number literal that is not an integer to serde (fraction, exponent or `-0`), kept as its text. */
export class JsonFloat {
  readonly float: string;
  constructor(text: string) {
    this.float = text;
  }
}

export type JsonValue = null | boolean | number | string | JsonFloat | JsonValue[] | { [k: string]: JsonValue };

export type JsonErrorKind = 'syntax' | 'depth' | 'duplicate_key' | 'lone_surrogate';

/** Why a text was refused, where (`pos`, a UTF-16 index) and under which keys (`path`). */
export class StrictJsonError extends Error {
  readonly kind: JsonErrorKind;
  readonly pos: number;
  readonly path: readonly string[];
  /** The repeated key, for 'duplicate_key'. */
  readonly key?: string;
  constructor(kind: JsonErrorKind, message: string, pos: number, path: readonly string[], key?: string) {
    const keys = path.slice(0, path.length > 5 ? 4 : 5).map((p) => JSON.stringify(p));
    if (path.length > 5) keys.push(`… ${path.length - 4} more levels`);
    super(`${message} at position ${pos}${path.length ? ` (in ${keys.join(' › ')})` : ''}`);
    this.name = 'StrictJsonError';
    this.kind = kind;
    this.pos = pos;
    this.path = path;
    this.key = key;
  }
}

export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects (default 127). */
  maxDepth?: number;
}

/** Parses `text` under the rules above; throws StrictJsonError. */
export function parseStrictJson(text: string, opts: StrictJsonOptions = {}): JsonValue {
  const p = new Parser(text, opts.maxDepth ?? 127);
  try {
    p.ws();
    const v = p.value(0);
    p.ws();
    if (p.i < text.length) p.fail('syntax', 'unexpected text after the value');
    return v;
  } catch (e) {
    if (e instanceof StrictJsonError) throw e;
    // A maxDepth set beyond what the stack holds: the same answer as the cap.
    if (e instanceof RangeError) throw new StrictJsonError('depth', 'nesting too deep', p.i, p.path);
    throw e;
  }
}

const WS = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const DIGIT = (c: number) => c >= 0x30 && c <= 0x39;

class Parser {
  i = 0;
  readonly path: string[] = [];
  constructor(
    readonly s: string,
    readonly maxDepth: number,
  ) {}

  fail(kind: JsonErrorKind, msg: string, at = this.i): never {
    throw new StrictJsonError(kind, msg, at, [...this.path]);
  }

  ws(): void {
    const s = this.s;
    while (this.i < s.length && WS(s.charCodeAt(this.i))) this.i++;
  }

  value(depth: number): JsonValue {
    const c = this.s.charCodeAt(this.i);
    if (c === 0x7b) return this.object(depth + 1);
    if (c === 0x5b) return this.array(depth + 1);
    if (c === 0x22) return this.string();
    if (c === 0x2d || DIGIT(c)) return this.number();
    if (this.s.startsWith('true', this.i)) return (this.i += 4), true;
    if (this.s.startsWith('false', this.i)) return (this.i += 5), false;
    if (this.s.startsWith('null', this.i)) return (this.i += 4), null;
    return this.fail('syntax', this.i >= this.s.length ? 'unexpected end of input' : `unexpected character ${JSON.stringify(this.s[this.i])}`);
  }

  object(depth: number): { [k: string]: JsonValue } {
    if (depth > this.maxDepth) this.fail('depth', `nesting deeper than ${this.maxDepth}`);
    this.i++;
    // A plain object (null-prototype objects are dictionary-mode in V8: slow and large when a header has 10⁶ of them).
    const out: { [k: string]: JsonValue } = {};
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) return this.i++, out;
    for (;;) {
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail('syntax', 'expected a string key');
      const at = this.i;
      const k = this.string();
      if (Object.prototype.hasOwnProperty.call(out, k)) {
        throw new StrictJsonError('duplicate_key', `key ${JSON.stringify(k)} repeated`, at, [...this.path], k);
      }
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail('syntax', "expected ':'");
      this.i++;
      this.ws();
      this.path.push(k);
      const v = this.value(depth);
      if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      else out[k] = v;
      this.path.pop();
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === 0x7d) return out;
      if (c !== 0x2c) this.fail('syntax', "expected ',' or '}'", this.i - 1);
      this.ws();
    }
  }

  array(depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail('depth', `nesting deeper than ${this.maxDepth}`);
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) return this.i++, out;
    for (;;) {
      this.path.push(String(out.length));
      out.push(this.value(depth));
      this.path.pop();
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === 0x5d) return out;
      if (c !== 0x2c) this.fail('syntax', "expected ',' or ']'", this.i - 1);
      this.ws();
    }
  }

  string(): string {
    const s = this.s;
    const start = ++this.i;
    // Fast path: no escapes.
    let j = start;
    for (; j < s.length; j++) {
      const c = s.charCodeAt(j);
      if (c === 0x22) {
        this.i = j + 1;
        return s.slice(start, j);
      }
      if (c === 0x5c) break;
      if (c < 0x20) this.fail('syntax', 'control character in a string', j);
    }
    let out = s.slice(start, j);
    this.i = j;
    for (;;) {
      if (this.i >= s.length) this.fail('syntax', 'unterminated string');
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail('syntax', 'control character in a string');
      if (c !== 0x5c) {
        out += s[this.i++];
        continue;
      }
      const e = s[this.i + 1];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          this.i += 2;
          break;
        case 'b':
          out += '\b';
          this.i += 2;
          break;
        case 'f':
          out += '\f';
          this.i += 2;
          break;
        case 'n':
          out += '\n';
          this.i += 2;
          break;
        case 'r':
          out += '\r';
          this.i += 2;
          break;
        case 't':
          out += '\t';
          this.i += 2;
          break;
        case 'u': {
          const at = this.i;
          const u = this.hex4(this.i + 2);
          this.i += 6;
          if (u >= 0xdc00 && u <= 0xdfff) this.fail('lone_surrogate', 'lone low surrogate escape', at);
          if (u >= 0xd800 && u <= 0xdbff) {
            if (s[this.i] !== '\\' || s[this.i + 1] !== 'u') this.fail('lone_surrogate', 'lone high surrogate escape', at);
            const lo = this.hex4(this.i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone_surrogate', 'lone high surrogate escape', at);
            this.i += 6;
            out += String.fromCharCode(u, lo);
          } else out += String.fromCharCode(u);
          break;
        }
        default:
          this.fail('syntax', 'invalid escape');
      }
    }
  }

  hex4(at: number): number {
    const h = this.s.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('syntax', 'invalid \\u escape', at);
    return parseInt(h, 16);
  }

  number(): number | JsonFloat {
    const s = this.s;
    const start = this.i;
    if (s.charCodeAt(this.i) === 0x2d) this.i++;
    const c0 = s.charCodeAt(this.i);
    if (c0 === 0x30) this.i++;
    else if (c0 >= 0x31 && c0 <= 0x39) while (DIGIT(s.charCodeAt(this.i))) this.i++;
    else this.fail('syntax', 'invalid number');
    let integer = true;
    if (s.charCodeAt(this.i) === 0x2e) {
      integer = false;
      this.i++;
      if (!DIGIT(s.charCodeAt(this.i))) this.fail('syntax', 'invalid number');
      while (DIGIT(s.charCodeAt(this.i))) this.i++;
    }
    const e = s.charCodeAt(this.i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      this.i++;
      const sign = s.charCodeAt(this.i);
      if (sign === 0x2b || sign === 0x2d) this.i++;
      if (!DIGIT(s.charCodeAt(this.i))) this.fail('syntax', 'invalid number');
      while (DIGIT(s.charCodeAt(this.i))) this.i++;
    }
    const text = s.slice(start, this.i);
    if (!integer || text === '-0') return new JsonFloat(text);
    return Number(text);
  }
}
