/** Element types a Tensor can hold. f16 and bf16 are stored as their raw 16-bit patterns (Uint16Array). */
export type DType = 'f64' | 'f32' | 'f16' | 'bf16' | 'i8' | 'u8' | 'i32' | 'u32';

export type TypedArray = Float64Array | Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | Uint32Array;

/** One table for everything per dtype: byte size and the typed-array constructor that views it. */
export const DTYPES = {
  f64: { bytes: 8, array: Float64Array },
  f32: { bytes: 4, array: Float32Array },
  f16: { bytes: 2, array: Uint16Array },
  bf16: { bytes: 2, array: Uint16Array },
  i8: { bytes: 1, array: Int8Array },
  u8: { bytes: 1, array: Uint8Array },
  i32: { bytes: 4, array: Int32Array },
  u32: { bytes: 4, array: Uint32Array },
} as const satisfies Record<DType, { bytes: number; array: unknown }>;

export type ArrayOf<D extends DType> = InstanceType<(typeof DTYPES)[D]['array']>;

export function byteSize(dtype: DType): number {
  return DTYPES[dtype].bytes;
}

/** Views `byteLength` bytes of `buffer` at `byteOffset` as the typed array of `dtype` (offset must be aligned). */
export function viewAs<D extends DType>(dtype: D, buffer: ArrayBufferLike, byteOffset: number, length: number): ArrayOf<D> {
  const C = DTYPES[dtype].array as unknown as new (b: ArrayBufferLike, o: number, l: number) => ArrayOf<D>;
  return new C(buffer, byteOffset, length);
}
