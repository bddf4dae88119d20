// Copied from the project's shared bench-model kit (../shared/bench-model/onnxw.mjs, 2026-12-01) so the repo stands alone;
// used by lib/build-onnx.mjs.
// Hand-written ONNX protobuf writer (superset of ../lib/onnx.mjs): typed tensors (f32, i64),
// typed value infos, int / ints / float attributes. Field numbers follow onnx/onnx.proto.
function varint(n) {
  let v = BigInt(n);
  if (v < 0n) v &= 0xffffffffffffffffn; // two's complement for negative int64
  const out = [];
  while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
  out.push(Number(v));
  return Buffer.from(out);
}
const key = (field, wire) => varint((field << 3) | wire);
const fVarint = (field, n) => Buffer.concat([key(field, 0), varint(n)]);
const fBytes = (field, bytes) => {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  return Buffer.concat([key(field, 2), varint(b.length), b]);
};
const fString = (field, s) => fBytes(field, Buffer.from(s, 'utf8'));
const fFloat = (field, x) => { const b = Buffer.alloc(4); b.writeFloatLE(x); return Buffer.concat([key(field, 5), b]); };

export const DT = { float32: 1, int64: 7 };

// TensorProto: dims=1, data_type=2, name=8, raw_data=9
export function tensor(name, dims, arr) {
  const dt = arr instanceof Float32Array ? DT.float32 : arr instanceof BigInt64Array ? DT.int64 : null;
  if (dt === null) throw new Error(`tensor ${name}: unsupported array type`);
  const n = dims.reduce((a, b) => a * b, 1);
  if (n !== arr.length) throw new Error(`tensor ${name}: dims ${dims} vs length ${arr.length}`);
  return Buffer.concat([...dims.map((d) => fVarint(1, d)), fVarint(2, dt), fString(8, name),
    fBytes(9, Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength))]);
}
export const i64 = (name, vals, dims = [vals.length]) => tensor(name, dims, BigInt64Array.from(vals.map(BigInt)));
export const f32 = (name, vals, dims = [vals.length]) => tensor(name, dims, Float32Array.from(vals));

// ValueInfoProto{name=1, type=2 -> TypeProto{tensor_type=1 -> {elem_type=1, shape=2 -> {dim=1 -> {dim_value=1|dim_param=2}}}}}
export function valueInfo(name, dims, elemType = DT.float32) {
  const shape = Buffer.concat(dims.map((d) => fBytes(1, typeof d === 'string' ? fString(2, d) : fVarint(1, d))));
  const tensorType = Buffer.concat([fVarint(1, elemType), fBytes(2, shape)]);
  return Buffer.concat([fString(1, name), fBytes(2, fBytes(1, tensorType))]);
}

// AttributeProto: name=1, f=2, i=3, ints=8, type=20 (FLOAT=1, INT=2, INTS=7)
export const attrInt = (name, i) => Buffer.concat([fString(1, name), fVarint(3, i), fVarint(20, 2)]);
export const attrFloat = (name, f) => Buffer.concat([fString(1, name), fFloat(2, f), fVarint(20, 1)]);
export const attrInts = (name, xs) => Buffer.concat([fString(1, name), ...xs.map((x) => fVarint(8, x)), fVarint(20, 7)]);

// NodeProto: input=1, output=2, name=3, op_type=4, attribute=5
export function node(opType, inputs, outputs, name, attrs = []) {
  return Buffer.concat([...inputs.map((s) => fString(1, s)), ...outputs.map((s) => fString(2, s)),
    fString(3, name), fString(4, opType), ...attrs.map((a) => fBytes(5, a))]);
}

// GraphProto: node=1, name=2, initializer=5, input=11, output=12
export function graph(name, nodes, initializers, inputs, outputs) {
  return Buffer.concat([...nodes.map((n) => fBytes(1, n)), fString(2, name),
    ...initializers.map((t) => fBytes(5, t)), ...inputs.map((v) => fBytes(11, v)), ...outputs.map((v) => fBytes(12, v))]);
}

// ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8 -> {domain=1, version=2}
export function model(graphBytes, opset = 17, irVersion = 8) {
  return Buffer.concat([fVarint(1, irVersion), fString(2, 'peftjs-model-anchor'), fBytes(7, graphBytes),
    fBytes(8, Buffer.concat([fString(1, ''), fVarint(2, opset)]))]);
}
