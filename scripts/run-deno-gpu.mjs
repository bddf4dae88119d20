// Deno's built-in navigator.gpu (wgpu) on Mesa lavapipe: every golden case on both kernel routes, the toggle checks,
// and the f16-storage kernels (lavapipe has shader-f16; PEFTJS_REQUIRE_F16 makes a missing f16 a failure).
//
// Deno 2.9's wgpu sometimes aborts in native teardown *after* the test run has finished and reported (glibc:
// "corrupted size vs. prev_size" / "double free or corruption", SIGABRT; seen about one exit in 6–20, on SwiftShader
// and on lavapipe alike, never inside a test). A run counts as passed only when Deno's own summary line says every
// expected test passed; such an abort after it is reported loudly, and any other failure fails.
import { spawnSync } from 'node:child_process';

const EXPECTED_TESTS = 5;
const deno = 'node_modules/.bin/deno';
const args = ['test', '-A', '--sloppy-imports', 'test/deno/webgpu.deno.ts'];
const env = {
  ...process.env,
  DENO_NO_UPDATE_CHECK: '1',
  NO_COLOR: '1',
  XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
  PEFTJS_REQUIRE_F16: '1',
  VK_ICD_FILENAMES: '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json',
};
console.log(`\n▶ deno ${args.join(' ')}  [lavapipe (shader-f16)]`);
const r = spawnSync(deno, args, { env, stdio: ['inherit', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
const out = r.stdout?.toString() ?? '';
process.stdout.write(out);

const summary = /^ok \| (\d+) passed \| 0 failed/m.exec(out);
const allPassed = summary !== null && Number(summary[1]) === EXPECTED_TESTS;
if (r.status === 0 && allPassed) process.exit(0);
if (allPassed && (r.signal === 'SIGABRT' || r.status === 134)) {
  console.log(`\n⚠ deno aborted in native WebGPU teardown after all ${EXPECTED_TESTS} tests passed (upstream wgpu bug; see the comment at the top of this script)`);
  process.exit(0);
}
console.log(`\n✗ deno webgpu: exit ${r.status ?? r.signal}; ${summary ? `summary "${summary[0]}"` : 'no passing summary'} (expected ${EXPECTED_TESTS} passed)`);
process.exit(1);
