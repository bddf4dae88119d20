// peftjs public API: re-exports only.

export { VERSION } from './version.js';
export * from './errors.js';
export { DTYPES, byteSize, type DType, type TypedArray } from './dtype.js';
export { Tensor, CpuStorage, type Storage } from './tensor.js';
export { DEFAULT_LIMITS, resolveLimits, ByteBudget, type LoadLimits } from './limits.js';

// Backends
export type { Backend, BackendName, LinearWeight, LoRADelta, QuantizedWeight, Route, RouteTerm, UploadOptions } from './backends/backend.js';
export { createBackend, defaultBackend, init, setDefaultBackend, type CreatableBackend } from './backends/index.js';
export { JsBackend, refLinear, refMatmul, type RefDelta } from './backends/js.js';
export { WasmBackend, type WasmBackendOptions } from './backends/wasm.js';
export type { GemvTileChoice, GemvTuningReport } from './backends/wasm/gemv-tuner.js';
export type { PanelSweepName, PanelSweepReport } from './backends/wasm/panel-sweep.js';
export { f16ToF32, bf16ToF32, f32ToF16, f32ToBf16 } from './backends/wasm/convert.js';
export { checkWasmSupport, initWasm } from './runtime/wasm.js';

// Files and formats
export { bytesSource, blobSource, type ByteSource } from './io/source.js';
export { hubFileSet, parseHubRepo, hubBaseUrl, cacheApiStore, HUB_ENDPOINT, type HubOptions, type HubRepo, type HubCache, type HubCacheEntry } from './io/hub.js';
export { nodeDirCache } from './io/hub-cache-node.js';
export { toFileSet, memoryFileSet, limitedFileSet, type AdapterSource, type FileLike, type FileSet, type OpenOptions } from './io/fileset.js';
export { SafetensorsReader, writeSafetensors, SAFE_DTYPES, SAFE_DTYPE_ORDER, type SafeDType, type TensorInfo } from './formats/safetensors.js';
export { parseStrictJson, JsonFloat, StrictJsonError } from './formats/json.js';
export { readTorchZip, type RawTensor } from './formats/torch-zip.js';

// Adapters
export { parsePeftConfig, type PeftConfig } from './peft/config.js';
export { loadPEFT, missingAdapterKeys, missingKeysWarning } from './peft/load.js';
export { PATTERN_LIMITS } from './peft/scaling.js';
export { PY_RE_LIMITS } from './peft/pyre.js';
export { savePEFT } from './peft/save.js';
export { loadAdapter } from './adapter/detect.js';
export { loadMLX } from './mlx/load.js';
export { saveMLX } from './mlx/save.js';
export type { AdapterModule, AdapterReplacement, AdapterSpec } from './adapter/spec.js';
export { buildReport, type AdapterReport, type ReportRow } from './adapter/report.js';

// Layers and models
export { Module, disposeModule, type ModuleClass } from './nn/module.js';
export { Linear, type Projection, type LayerOptions } from './nn/linear.js';
export { Conv1D } from './nn/conv1d.js';
export { QuantizedLinear, type QuantizeOptions } from './nn/quantized-linear.js';
export { Embedding } from './nn/embedding.js';
export { modelFromWeights, type ModelFromWeightsOptions } from './nn/model-from-weights.js';
export { loadModel } from './models/load-model.js';
export { LoRAModule, LayerAdapter, isLoRALayer, type LoRALayer, type AdapterInit, type AdapterVariant, type ForwardOptions, type FuseOptions, type RowAdapters } from './lora/layer.js';
export { LoRALinear } from './lora/lora-linear.js';
export { QLoRALinear } from './lora/qlora-linear.js';
export { DoRALinear } from './lora/dora-linear.js';
export { QDoRALinear } from './lora/qdora-linear.js';
export { LoRAEmbedding } from './lora/lora-embedding.js';
export { LoRAContainer, type AppliedModule, type ContainerOptions, type ContainerLoadOptions } from './adapter/container.js';
export { setLoRAEnabled, withAdapters, type SetEnabledOptions } from './lora/set-enabled.js';

// Language models and generation
export { CausalLM, type CausalLMLoadOptions, type DraftSpec, type GenerateOptions, type GenerateResult, type StreamChunk } from './models/causal-lm.js';
export { KVCache } from './models/kv-cache.js';
export { registerArchitecture, supportedModelTypes, type Architecture, type Decoder, type DecoderForwardOptions } from './models/architecture.js';
export { BUILTIN_ARCHITECTURES } from './models/architectures.js';
export { ConfigReader, type DecoderConfig } from './models/config.js';
export { readCheckpoint, type Checkpoint, type LoadProgress } from './models/checkpoint.js';
export { TextTokenizer, TextStreamer } from './models/tokenizer.js';
export { RMSNorm, LayerNorm } from './nn/norm.js';
export { Rng, argmax, sampleToken, type SamplingOptions } from './generate/sampling.js';
export { decodeTokens, speculativeTokens, expectedTokens, type DecodeTarget, type DecodeStats, type SpeculativeStats, type DraftOptions } from './generate/decode.js';
export { loraLayersOf } from './lora/set-enabled.js';
export type { AttentionShape } from './backends/backend.js';

// Workers: the worker side (`WorkerLM`, the main-thread side, is in peftjs/worker)
export { serveLM } from './worker/host.js';
export type { HostPort } from './worker/endpoint.js';
