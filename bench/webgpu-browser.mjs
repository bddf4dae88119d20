// Runs webgpu.html in headless Chromium (the repo root's vite + playwright-core devDependencies) and prints its
// markdown. Chromium is the system one (CHROMIUM=/path to change it). By default it is pointed at SwiftShader (the
// machines here have no GPU; its timings are not meaningful); --hardware leaves the adapter choice to Chromium.
// Usage: node webgpu-browser.mjs [--quick] [--hardware]
import { createRequire } from 'node:module';
import { args } from './lib/common.mjs';

const require = createRequire(new URL('../package.json', import.meta.url));
const { createServer } = await import(require.resolve('vite'));
const { chromium } = require('playwright-core');

const root = new URL('..', import.meta.url).pathname;
const server = await createServer({ root, configFile: false, logLevel: 'error', server: { port: 0 } });
await server.listen();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/lib/chromium/chromium',
  // WebGPU in headless Linux Chromium needs --enable-unsafe-webgpu and Vulkan; the last two pick SwiftShader.
  args: [
    '--enable-unsafe-webgpu',
    '--enable-features=Vulkan',
    '--no-sandbox',
    ...(process.argv.includes('--hardware') ? [] : ['--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader']),
  ],
});
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`http://localhost:${server.httpServer.address().port}/bench/webgpu.html${args().quick ? '?quick' : ''}`);
  await page.waitForFunction(() => document.getElementById('status').textContent !== 'running…', null, { timeout: 540_000 });
  console.error(await page.textContent('#log'));
  console.log(`${await page.textContent('#status')}\n\n${await page.textContent('#out')}`);
} finally {
  await browser.close();
  await server.close();
}
