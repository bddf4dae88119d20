// peftjs/worker: the main-thread side of a model run in a worker (the worker side is `serveLM`, in `peftjs`).
// The builds take the error classes from the main entry beside them (tsup.config.ts), so an error re-created here
// is an instance of the class `peftjs` exports.
export {
  PeftError,
  SafetensorsError,
  PickleError,
  ConfigError,
  AdapterError,
  ApplyError,
  IoError,
  WasmRuntimeError,
  BackendError,
  ModelError,
  WorkerError,
  type ErrorFacts,
  type Issue,
  type WorkerCode,
} from '../errors.js';
export {
  WorkerLM,
  type WorkerAdapterSpec,
  type WorkerAdapterInfo,
  type WorkerDraftSpec,
  type WorkerGenerateOptions,
  type WorkerLMOptions,
  type WorkerLoadOptions,
  type WorkerLoadProgress,
} from './client.js';
export type { WorkerLike } from './connection.js';
export type { WorkerFile, WorkerSource } from './protocol.js';
export type { GenerateResult, StreamChunk } from '../models/causal-lm.js';
export type { DecodeStats, SpeculativeStats } from '../generate/decode.js';
