// QuantizedLinear lives in linear.ts (it and Linear convert into each other); this path keeps its imports working.
export { QUANTIZE_DEFAULTS, QUANTIZE_VALUES, QuantizedLinear, type QuantizeOptions } from './linear.js';
