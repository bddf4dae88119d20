// The golden cases through the layers (modelFromWeights → LoRAContainer → apply/toggle/fuse/unfuse/unload) on WebGPU.
import { goldenSuite } from '../lora/golden-suite.js';
import { gpuBackend } from './env.js';

goldenSuite([{ name: 'webgpu', make: () => gpuBackend() }]);
