// Encoders for the small wasm modules the bench spells out in bytes (lib/bandwidth.mjs, lib/peak.mjs): no toolchain
// needed at bench time.

/** Unsigned LEB128 (sizes, indices, memarg offsets). */
export const leb = (n) => {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
/** Signed LEB128 (i32.const's immediate). */
export const sleb = (n) => {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};
/** A section: id, byte length, bytes. */
export const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
/** A name: length-prefixed UTF-8. */
export const str = (s) => [...leb(s.length), ...new TextEncoder().encode(s)];
