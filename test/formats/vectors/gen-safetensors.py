"""Vectors from the reference implementation (huggingface/safetensors, Rust crate through its Python binding).

    python3 -m venv /tmp/st && /tmp/st/bin/pip install safetensors && /tmp/st/bin/python gen-safetensors.py

Writes safetensors-reference.json: `writer` cases (tensors + metadata → the reference's exact bytes, from
`serialize`, i.e. tensor.rs `prepare`) and `reader` cases (a header → the reference's verdict from `deserialize`,
i.e. serde_json + `Metadata::validate`). The peftjs tests replay both; nothing here runs in the test suite.
"""
import ctypes, json, random, sys
import safetensors
from safetensors import _safetensors_rust as r

PY = {'BOOL': 'bool', 'U8': 'uint8', 'I8': 'int8', 'I16': 'int16', 'U16': 'uint16', 'I32': 'int32', 'U32': 'uint32',
      'I64': 'int64', 'U64': 'uint64', 'F16': 'float16', 'BF16': 'bfloat16', 'F32': 'float32', 'F64': 'float64',
      'F8_E4M3': 'float8_e4m3fn', 'F8_E4M3FNUZ': 'float8_e4m3fnuz', 'F8_E5M2': 'float8_e5m2', 'F8_E5M2FNUZ': 'float8_e5m2fnuz',
      'F8_E8M0': 'float8_e8m0fnu', 'F4': 'float4_e2m1fn_x2', 'C64': 'complex64'}
BITS = {'BOOL': 8, 'F4': 4, 'F6_E2M3': 6, 'F6_E3M2': 6, 'U8': 8, 'I8': 8, 'F8_E5M2': 8, 'F8_E4M3': 8, 'F8_E8M0': 8,
        'F8_E4M3FNUZ': 8, 'F8_E5M2FNUZ': 8, 'I16': 16, 'U16': 16, 'F16': 16, 'BF16': 16, 'I32': 32, 'U32': 32, 'F32': 32,
        'C64': 64, 'F64': 64, 'I64': 64, 'U64': 64}
NAMES = ['a', 'b', 'A', 'B', '9', '10', '0', '-1', '01', 'z.weight', 'lora_A', 'ü', 'é', '\u00ff', '\ue000', '\uffff', '\U0001F600',
         '\U00010000', 'tab\tname', 'quote"name', 'back\\slash', 'nl\nname', '\x01ctl', '\x7fdel', '/slash', '', ' ', '__metadata', 'x' * 40]
keep = []

def spec(dtype, shape, data):
    buf = ctypes.create_string_buffer(data, max(len(data), 1))
    keep.append(buf)
    storage = list(shape)
    if dtype == 'F4' and storage:
        storage[-1] //= 2  # the binding takes F4's storage shape (two per byte) and doubles the last dim
    return r.TensorSpec(dtype=PY[dtype], shape=storage, data_ptr=ctypes.addressof(buf), data_len=len(data))

def nbytes(dtype, shape):
    n = 1
    for d in shape: n *= d
    return n * BITS[dtype] // 8

rng = random.Random(1234)
writer = []
for case in range(120):
    k = rng.randint(0, 6)
    names = rng.sample(NAMES, k)
    tensors = {}
    for name in names:
        dtype = rng.choice(list(PY))
        shape = [rng.randint(0, 3) for _ in range(rng.randint(0, 3))]
        if dtype == 'F4':
            shape = shape[:-1] + [2 * rng.randint(0, 2)] if shape else [2]
        data = bytes(rng.randrange(256) for _ in range(nbytes(dtype, shape)))
        tensors[name] = {'dtype': dtype, 'shape': shape, 'data': data.hex()}
    meta = rng.choice([None, {}, {'format': 'pt'}, {'ü': 'ß\n"'}, {'\U0001F600': '\ue000'}])
    out = r.serialize({n: spec(t['dtype'], t['shape'], bytes.fromhex(t['data'])) for n, t in tensors.items()}, meta)
    try:
        r.deserialize(out)
        readable = True
    except Exception:
        # No tensors and an empty metadata dict: serde_json is handed a map length hint of 0 (tensors + metadata
        # entries), writes `{}` at once, then the entry: `{},"__metadata__":{}}`, which the reference cannot read.
        readable = False
    writer.append({'tensors': tensors, 'metadata': meta, 'out': out.hex(), 'readable': readable})

def verdict(header, data_len):
    h = header.encode('utf-8', 'surrogatepass') if isinstance(header, str) else header
    f = len(h).to_bytes(8, 'little') + h + bytes(data_len)
    try:
        r.deserialize(f)
        return {'ok': True}
    except Exception as e:
        return {'ok': False, 'error': str(e)}

def entry(dtype='F32', shape='[1]', offsets='[0,4]', extra=''):
    return '{"dtype":"%s","shape":%s,"data_offsets":%s%s}' % (dtype, shape, offsets, extra)

reader = []
def case(why, header, data_len=4):
    reader.append({'why': why, 'header': header, 'dataLen': data_len, **verdict(header, data_len)})

case('valid F32', '{"a":%s}' % entry())
for d, b in BITS.items():
    n = 24 * 8 // b  # elements filling 24 bytes (a whole number for 4, 6, 8, 16, 32 and 64 bits)
    case(f'dtype {d} is parsed', '{"a":%s}' % entry(d, f'[{n}]', '[0,24]'), 24)
case('F4 odd count: MisalignedSlice', '{"a":%s}' % entry('F4', '[3]', '[0,2]'), 2)
case('F6 count not filling bytes: MisalignedSlice', '{"a":%s}' % entry('F6_E2M3', '[3]', '[0,3]'), 3)
case('unknown dtype', '{"a":%s}' % entry('F17'))
case('dtype named like a JS property', '{"a":%s}' % entry('toString'))
case('dtype named __proto__', '{"a":%s}' % entry('__proto__'))
case('lower-case dtype', '{"a":%s}' % entry('f32'))
for v in ['1.0', '1e0', '1E0', '-0', '0.0', '1e-0', '-1', '1.5', '18446744073709551616']:
    case(f'shape value {v}', '{"a":%s}' % entry(shape=f'[{v}]'))
    case(f'offset value {v}', '{"a":%s}' % entry(offsets=f'[0,{v}]'))
case('repeated data_offsets in one entry', '{"a":%s}' % entry(extra=',"data_offsets":[0,4]'))
case('repeated dtype in one entry', '{"a":%s}' % entry(extra=',"dtype":"F32"'))
case('repeated shape in one entry', '{"a":%s}' % entry(extra=',"shape":[1]'))
case('unknown field in an entry', '{"a":%s}' % entry(extra=',"extra":[1.5,{"x":-0}]'))
case('repeated tensor name', '{"a":%s,"a":%s}' % (entry(), entry()))
case('repeated __metadata__', '{"__metadata__":{},"__metadata__":{},"a":%s}' % entry())
case('repeated metadata key', '{"__metadata__":{"k":"1","k":"2"},"a":%s}' % entry())
case('metadata null', '{"__metadata__":null,"a":%s}' % entry())
case('metadata value a number', '{"__metadata__":{"k":1},"a":%s}' % entry())
case('lone high surrogate escape in a name', '{"a\\ud800":%s}' % entry())
case('lone low surrogate escape in a name', '{"a\\udc00":%s}' % entry())
case('lone surrogate escape in metadata', '{"__metadata__":{"k":"\\ud83d"},"a":%s}' % entry())
case('paired surrogate escapes', '{"a\\ud83d\\ude00":%s}' % entry())
case('reversed surrogate escapes', '{"a\\ude00\\ud83d":%s}' % entry())
for depth in [126, 127, 128, 129]:
    # depth counts the header object: the extra field holds depth − 2 nested arrays.
    n = depth - 2
    case(f'nesting depth {depth}', '{"a":%s}' % entry(extra=',"x":' + '[' * n + ']' * n))
case('entry as an array (serde accepts a seq for a struct)', '{"a":["F32",[1],[0,4]]}')
case('offsets with three numbers', '{"a":%s}' % entry(offsets='[0,4,4]'))
case('trailing comma', '{"a":%s,}' % entry())
case('header not an object', '[]', 0)
case('trailing garbage', '{"a":%s}x' % entry())
case('trailing NUL padding', '{"a":%s}\u0000' % entry())
case('leading whitespace', ' {"a":%s}' % entry())
case('shape [2^32, 2^32, 0]', '{"a":%s}' % entry(shape='[4294967296,4294967296,0]', offsets='[0,0]'), 0)
case('empty header object', '{}', 0)

json.dump({'generator': f'safetensors {safetensors.__version__} (Python binding of the Rust crate)', 'writer': writer, 'reader': reader},
          open(sys.argv[1] if len(sys.argv) > 1 else 'safetensors-reference.json', 'w'), indent=0, ensure_ascii=True)
