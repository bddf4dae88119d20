export { initWasm, wasmRuntime, wasmReady, checkWasmSupport, WasmRuntime, ABI_VERSION, type PeftWasmExports } from './wasm.js';
export { WasmStorage, allocWasmTensor, copyToWasm, wasmPtrOf } from './storage.js';
export { ScratchArena, ScratchLayout } from './scratch.js';
