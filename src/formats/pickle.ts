import { PickleError } from '../errors.js';

/**
 * A restricted unpickler for PyTorch checkpoints (`data.pkl` inside a torch zip). It knows only the
 * opcodes `torch.save` emits for a state dict and only the globals that rebuild tensors; anything else is
 * refused before it could matter. Nothing is ever executed: globals resolve to inert tags, and REDUCE
 * on a tag builds a plain description of the tensor. Opcode table: CPython `Lib/pickletools.py`.
 */

/** A storage reference from a persistent id `('storage', torch.FloatStorage, key, location, numel)`. */
export interface StorageRef {
  readonly kind: 'storage';
  readonly storageType: string; // e.g. 'FloatStorage'
  readonly key: string;
  readonly location: string;
  readonly numel: number;
}

/** What `_rebuild_tensor_v2(storage, offset, size, stride, …)` describes (offsets and strides in elements). */
export interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
}

/** An allowed global, resolved to a tag; REDUCE on it is interpreted below, never called. */
export interface GlobalRef {
  readonly kind: 'global';
  readonly name: string; // 'module.qualname'
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | Map<PyValue, PyValue>
  | StorageRef
  | TensorRef
  | GlobalRef;

const CALLABLES = new Set(['torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_tensor', 'torch._utils._rebuild_parameter', 'collections.OrderedDict']);
/** `torch.<X>Storage` classes appear only as tags inside persistent ids; the dtype is looked up later. */
const STORAGE_GLOBAL = /^torch\.([A-Za-z0-9]+Storage)$/;

/** Every opcode we accept, by byte; everything else (INST, OBJ, NEWOBJ, EXT*, PERSID, …) is refused. */
const OP = {
  PROTO: 0x80,
  FRAME: 0x95,
  STOP: 0x2e, // .
  MARK: 0x28, // (
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  EMPTY_DICT: 0x7d, // }
  EMPTY_LIST: 0x5d, // ]
  EMPTY_TUPLE: 0x29, // )
  DICT: 0x64, // d
  LIST: 0x6c, // l
  TUPLE: 0x74, // t
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NONE: 0x4e, // N
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  LONG1: 0x8a,
  BINFLOAT: 0x47, // G
  BINUNICODE: 0x58, // X
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  SHORT_BINBYTES: 0x43, // C
  BINBYTES: 0x42, // B
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  MEMOIZE: 0x94,
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  GLOBAL: 0x63, // c
  STACK_GLOBAL: 0x93,
  REDUCE: 0x52, // R
  BUILD: 0x62, // b
  BINPERSID: 0x51, // Q
  APPEND: 0x61, // a
  APPENDS: 0x65, // e
  SETITEM: 0x73, // s
  SETITEMS: 0x75, // u
} as const;

/** Names of refused opcodes, for the error message (from pickletools). */
const REFUSED_NAMES: Record<number, string> = {
  0x69: 'INST',
  0x6f: 'OBJ',
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x50: 'PERSID',
  0x49: 'INT',
  0x4c: 'LONG',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x46: 'FLOAT',
  0x70: 'PUT',
  0x67: 'GET',
  0x8b: 'LONG4',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** A mark on the stack (MARK … TUPLE). */
const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

const OPNAME: Record<number, string> = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k]));

export interface UnpickleOptions {
  /** Name used in errors. */
  file?: string;
}

/** Runs the restricted unpickler over `data` and returns the top-level value. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): PyValue {
  const file = opts.file ?? 'data.pkl';
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: Slot[] = [];
  const memo = new Map<number, PyValue>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let opAt = 0;

  const bad = (detail: string, expected?: unknown, got?: unknown): PickleError =>
    new PickleError('bad_pickle', 'malformed pickle', { file, where: `${file} @ byte ${opAt}`, expected, got, detail });

  const need = (n: number): number => {
    if (n < 0 || pos + n > data.byteLength) throw bad('truncated', `${n} more bytes`, `${data.byteLength - pos}`);
    const at = pos;
    pos += n;
    return at;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined) throw bad('stack underflow');
    if (v === MARK) throw bad('unexpected MARK');
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw bad('stack underflow');
    return v;
  };
  const popMark = (): PyValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && stack[i] !== MARK) i--;
    if (i < 0) throw bad('no MARK on the stack');
    const items = stack.splice(i + 1) as PyValue[];
    stack.pop();
    return items;
  };
  const str = (n: number): string => {
    const at = need(n);
    try {
      return utf8.decode(data.subarray(at, at + n));
    } catch {
      throw bad('string is not UTF-8');
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw bad('unterminated GLOBAL line');
    const s = new TextDecoder('latin1').decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const resolveGlobal = (module: string, name: string): GlobalRef => {
    const full = `${module}.${name}`;
    if (!CALLABLES.has(full) && !STORAGE_GLOBAL.test(full)) {
      throw new PickleError('forbidden_global', 'pickle refers to a global outside the allow-list', {
        file,
        where: `${file} @ byte ${opAt}`,
        expected: 'torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, collections.OrderedDict or torch.*Storage',
        got: full,
      });
    }
    return { kind: 'global', name: full };
  };
  const isDict = (v: PyValue): v is Map<PyValue, PyValue> => v instanceof Map;
  const int = (v: PyValue, what: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`${what} is not an integer`, 'int', typeof v);
    return v;
  };
  const intList = (v: PyValue, what: string): number[] => {
    if (!Array.isArray(v)) throw bad(`${what} is not a tuple`, 'tuple', typeof v);
    return v.map((x) => {
      const n = int(x, what);
      if (n < 0) throw bad(`${what} is negative`, '≥ 0', n);
      return n;
    });
  };

  const reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!fn || typeof fn !== 'object' || (fn as GlobalRef).kind !== 'global') throw bad('REDUCE on a non-callable');
    const name = (fn as GlobalRef).name;
    if (!Array.isArray(args)) throw bad('REDUCE arguments are not a tuple');
    switch (name) {
      case 'collections.OrderedDict':
        return new Map();
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2': {
        const [storage, offset, size, stride] = args;
        if (!storage || typeof storage !== 'object' || (storage as StorageRef).kind !== 'storage') throw bad('tensor storage is not a persistent storage id');
        return {
          kind: 'tensor',
          storage: storage as StorageRef,
          offset: int(offset ?? null, 'storage offset'),
          shape: intList(size ?? null, 'size'),
          stride: intList(stride ?? null, 'stride'),
        } satisfies TensorRef;
      }
      case 'torch._utils._rebuild_parameter': {
        const t = args[0];
        if (!t || typeof t !== 'object' || (t as TensorRef).kind !== 'tensor') throw bad('parameter data is not a tensor');
        return t;
      }
      default:
        // A storage class is only a tag: calling it would construct a storage, which we never do.
        throw new PickleError('forbidden_global', 'global may not be called', { file, where: `${file} @ byte ${opAt}`, expected: 'a tensor rebuild function', got: name });
    }
  };

  for (;;) {
    opAt = pos;
    const op = data[need(1)]!;
    switch (op) {
      case OP.PROTO: {
        const v = data[need(1)]!;
        if (v > 5) throw bad('unsupported protocol', '≤ 5', v);
        break;
      }
      case OP.FRAME:
        need(8); // framing is only a read-ahead hint; the opcodes inside are read as usual
        break;
      case OP.STOP: {
        const v = pop();
        if (stack.length) throw bad('stack not empty at STOP', 0, stack.length);
        return v;
      }
      case OP.MARK:
        stack.push(MARK);
        break;
      case OP.POP:
        if (stack.pop() === undefined) throw bad('stack underflow');
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        stack.push(top());
        break;
      case OP.EMPTY_DICT:
        stack.push(new Map());
        break;
      case OP.EMPTY_LIST:
      case OP.EMPTY_TUPLE:
        stack.push([]);
        break;
      case OP.DICT: {
        const items = popMark();
        if (items.length % 2) throw bad('odd number of items for DICT');
        const m = new Map<PyValue, PyValue>();
        for (let i = 0; i < items.length; i += 2) m.set(items[i]!, items[i + 1]!);
        stack.push(m);
        break;
      }
      case OP.LIST:
      case OP.TUPLE:
        stack.push(popMark());
        break;
      case OP.TUPLE1:
        stack.push([pop()]);
        break;
      case OP.TUPLE2: {
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case OP.NONE:
        stack.push(null);
        break;
      case OP.NEWTRUE:
        stack.push(true);
        break;
      case OP.NEWFALSE:
        stack.push(false);
        break;
      case OP.BININT:
        stack.push(dv.getInt32(need(4), true));
        break;
      case OP.BININT1:
        stack.push(data[need(1)]!);
        break;
      case OP.BININT2:
        stack.push(dv.getUint16(need(2), true));
        break;
      case OP.LONG1: {
        const n = data[need(1)]!;
        const at = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[at + i]!);
        if (n > 0 && data[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n); // two's complement
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case OP.BINFLOAT:
        stack.push(dv.getFloat64(need(8), false)); // big-endian, per pickletools
        break;
      case OP.BINUNICODE:
        stack.push(str(dv.getUint32(need(4), true)));
        break;
      case OP.SHORT_BINUNICODE:
        stack.push(str(data[need(1)]!));
        break;
      case OP.BINUNICODE8: {
        const n = dv.getBigUint64(need(8), true);
        if (n > BigInt(data.byteLength)) throw bad('truncated', `${n} bytes`, data.byteLength - pos);
        stack.push(str(Number(n)));
        break;
      }
      case OP.SHORT_BINBYTES: {
        const n = data[need(1)]!;
        const at = need(n);
        stack.push(data.slice(at, at + n));
        break;
      }
      case OP.BINBYTES: {
        const n = dv.getUint32(need(4), true);
        const at = need(n);
        stack.push(data.slice(at, at + n));
        break;
      }
      case OP.BINPUT:
        memo.set(data[need(1)]!, top());
        break;
      case OP.LONG_BINPUT:
        memo.set(dv.getUint32(need(4), true), top());
        break;
      case OP.MEMOIZE:
        memo.set(memo.size, top());
        break;
      case OP.BINGET:
      case OP.LONG_BINGET: {
        const i = op === OP.BINGET ? data[need(1)]! : dv.getUint32(need(4), true);
        if (!memo.has(i)) throw bad('memo key not found', 'a stored memo key', i);
        stack.push(memo.get(i)!);
        break;
      }
      case OP.GLOBAL: {
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw bad('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case OP.BUILD: {
        // State set on an OrderedDict (a state dict's `_metadata`) or on a tensor (Python attributes):
        // nothing we need, and nothing to run.
        pop();
        const target = top();
        if (!isDict(target) && (target as TensorRef | null)?.kind !== 'tensor') throw bad('BUILD on an unexpected object');
        break;
      }
      case OP.BINPERSID: {
        const pid = pop();
        if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) throw bad('persistent id is not a storage tuple', "('storage', type, key, location, numel)");
        const [, type, key, location, numel] = pid;
        const m = type && typeof type === 'object' && (type as GlobalRef).kind === 'global' ? STORAGE_GLOBAL.exec((type as GlobalRef).name) : null;
        if (!m) throw bad('persistent id does not name a torch storage type');
        if (typeof key !== 'string' || typeof location !== 'string') throw bad('storage key or location is not a string');
        const ref: StorageRef = { kind: 'storage', storageType: m[1]!, key, location, numel: int(numel ?? null, 'storage size') };
        stack.push(ref);
        break;
      }
      case OP.APPEND: {
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) throw bad('APPEND to a non-list');
        list.push(v);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw bad('APPENDS to a non-list');
        for (const it of items) list.push(it);
        break;
      }
      case OP.SETITEM: {
        const v = pop();
        const k = pop();
        const d = top();
        if (!isDict(d)) throw bad('SETITEM on a non-dict');
        d.set(k, v);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        const d = top();
        if (!isDict(d)) throw bad('SETITEMS on a non-dict');
        if (items.length % 2) throw bad('odd number of items for SETITEMS');
        for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
        break;
      }
      default:
        throw new PickleError('forbidden_opcode', 'pickle opcode not allowed', {
          file,
          where: `${file} @ byte ${opAt}`,
          expected: 'an opcode torch.save uses for tensors',
          got: REFUSED_NAMES[op] ?? OPNAME[op] ?? `0x${op.toString(16).padStart(2, '0')}`,
        });
    }
  }
}
