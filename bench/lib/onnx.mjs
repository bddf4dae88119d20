// A minimal ONNX writer: just enough protobuf to hand onnxruntime-web a Gemm/MatMul graph built in memory.
// Field numbers are from onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto);
// there is no python `onnx` here, and the graphs are small enough to spell out by hand.

const enc = new TextEncoder();

/** Protobuf varint (non-negative ints up to 2^53 are enough for dims and ids). */
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

/** A message is a list of byte chunks; `msg()` joins them. */
class Msg {
  parts = [];
  tag(field, wire) {
    this.parts.push(Uint8Array.from(varint((field << 3) | wire)));
  }
  int(field, n) {
    this.tag(field, 0);
    this.parts.push(Uint8Array.from(varint(n)));
    return this;
  }
  bytes(field, u8) {
    this.tag(field, 2);
    this.parts.push(Uint8Array.from(varint(u8.byteLength)), u8);
    return this;
  }
  str(field, s) {
    return this.bytes(field, enc.encode(s));
  }
  sub(field, m) {
    return this.bytes(field, m.done());
  }
  float(field, x) {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x, true);
    this.parts.push(b);
    return this;
  }
  done() {
    const len = this.parts.reduce((a, p) => a + p.byteLength, 0);
    const out = new Uint8Array(len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR_FLOAT = 1;
const ATTR_INT = 2;

/** TensorProto: dims(1), data_type(2), name(8), raw_data(9). */
function tensorProto(name, dims, f32) {
  const m = new Msg();
  for (const d of dims) m.int(1, d);
  m.int(2, FLOAT).str(8, name);
  return m.bytes(9, new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength));
}

/** ValueInfoProto: name(1), type(2) → TypeProto.tensor_type(1) → elem_type(1), shape(2) → dim(1) → dim_value(1) | dim_param(2). */
function valueInfo(name, dims) {
  const shape = new Msg();
  for (const d of dims) shape.sub(1, typeof d === 'string' ? new Msg().str(2, d) : new Msg().int(1, d));
  const tensorType = new Msg().int(1, FLOAT).sub(2, shape);
  return new Msg().str(1, name).sub(2, new Msg().sub(1, tensorType));
}

/** NodeProto: input(1)*, output(2)*, name(3), op_type(4), attribute(5)* (AttributeProto: name(1), f(2), i(3), type(20)). */
function node(op, inputs, outputs, attrs = {}) {
  const m = new Msg();
  for (const i of inputs) m.str(1, i);
  for (const o of outputs) m.str(2, o);
  m.str(3, `${op}_${outputs[0]}`).str(4, op);
  for (const [k, v] of Object.entries(attrs)) {
    const a = new Msg().str(1, k);
    if (Number.isInteger(v)) a.int(3, v).int(20, ATTR_INT);
    else a.float(2, v).int(20, ATTR_FLOAT);
    m.sub(5, a);
  }
  return m;
}

/**
 * ModelProto (ir_version(1)=8, graph(7), opset_import(8) opset 17) for
 *   y = x·Wᵀ + bias [+ (x·A)·B]   with x [m,k] (m symbolic), W [n,k], bias [n], A [k,r], B [r,n] as initializers.
 * The base is one Gemm(transB=1), the form exporters emit for nn.Linear; LoRA is a MatMul chain plus Add,
 * the form an unmerged PEFT export takes. `B` should already carry the LoRA scale.
 */
export function linearModel({ k, n, w, bias, a, b, r }) {
  const g = new Msg();
  const lora = a !== undefined;
  g.sub(1, node('Gemm', ['x', 'W', 'bias'], [lora ? 'base' : 'y'], { transB: 1 }));
  if (lora) {
    g.sub(1, node('MatMul', ['x', 'A'], ['xa']));
    g.sub(1, node('MatMul', ['xa', 'B'], ['delta']));
    g.sub(1, node('Add', ['base', 'delta'], ['y']));
  }
  g.str(2, lora ? 'lora_linear' : 'linear');
  g.sub(5, tensorProto('W', [n, k], w));
  g.sub(5, tensorProto('bias', [n], bias));
  if (lora) {
    g.sub(5, tensorProto('A', [k, r], a));
    g.sub(5, tensorProto('B', [r, n], b));
  }
  g.sub(11, valueInfo('x', ['m', k]));
  g.sub(12, valueInfo('y', ['m', n]));
  const model = new Msg().int(1, 8).str(2, 'peftjs-bench').sub(7, g).sub(8, new Msg().str(1, '').int(2, 17));
  return model.done();
}
