// Deno's built-in navigator.gpu: the WebGPU golden checks on SwiftShader (f32; VK_ICD_FILENAMES as set by the
// caller), then the f16-storage kernels on Mesa lavapipe, which has shader-f16 (there a missing f16 fails).
import { spawnSync } from 'node:child_process';

const deno = 'node_modules/.bin/deno';
const args = ['test', '-A', '--sloppy-imports', 'test/deno/webgpu.deno.ts'];
const base = { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
const lavapipe = { ...base, PEFTJS_REQUIRE_F16: '1', VK_ICD_FILENAMES: '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json' };
const runs = [
  ['SwiftShader (f32)', base],
  ['lavapipe (shader-f16)', lavapipe],
];
let failed = 0;
for (const [label, env] of runs) {
  console.log(`\n▶ deno ${args.join(' ')}  [${label}]`);
  const r = spawnSync(deno, args, { stdio: 'inherit', env });
  if (r.status !== 0) failed++;
}
console.log(`\n${runs.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
