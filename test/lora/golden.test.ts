import { backendCases } from './backends.js';
import { goldenSuite } from './golden-suite.js';

goldenSuite(backendCases);
