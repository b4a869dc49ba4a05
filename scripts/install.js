#!/usr/bin/env node
// `npm install` entry: use a prebuilt binary when one matches and this is not a source
// checkout; otherwise populate ggml (scripts/fetch-ggml.js) and build the addon with
// cmake-js (Release, CPU backend). Switches: SPECDEC_CUDA=1 (ggml CUDA backend),
// SPECDEC_METAL=1, SPECDEC_FROM_SOURCE=1 (build even where a prebuilt binary matches),
// SPECDEC_PORTABLE=1 (no -march=native), SPECDEC_SKIP_BUILD=1, SPECDEC_SANITIZE=1
// (ggml and the addon with AddressSanitizer + UndefinedBehaviorSanitizer, built into build-asan/ so
// that the normal build stays; scripts/sanitize-test.sh loads it).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { fetchGgml } = require('./fetch-ggml');

const root = path.resolve(__dirname, '..');
const force = process.argv.includes('--force');
const on = (v) => v === '1' || v === 'true' || v === 'ON';

if (on(process.env.SPECDEC_SKIP_BUILD) && !force) {
  console.error('[specdec] SPECDEC_SKIP_BUILD is set: not building the native addon');
  process.exit(0);
}

const isCheckout = fs.existsSync(path.join(root, '.git'));
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const wantsSource = on(process.env.SPECDEC_CUDA) || on(process.env.SPECDEC_METAL) || on(process.env.SPECDEC_FROM_SOURCE);
if (!force && !isCheckout && !wantsSource && fs.existsSync(prebuilt)) {
  console.error(`[specdec] using the prebuilt binary in ${path.relative(root, prebuilt)}`);
  process.exit(0);
}

if (!fetchGgml()) process.exit(1);

const args = [require.resolve('cmake-js/bin/cmake-js', { paths: [root] }), 'compile', '--config', 'Release', '--log-level', 'warn'];
if (on(process.env.SPECDEC_CUDA)) args.push('--CDSPECDEC_CUDA=ON');
if (on(process.env.SPECDEC_METAL)) args.push('--CDSPECDEC_METAL=ON');
if (on(process.env.SPECDEC_PORTABLE)) args.push('--CDSPECDEC_NATIVE=OFF');
if (on(process.env.SPECDEC_SANITIZE)) args.push('--CDSPECDEC_SANITIZE=ON', '--out', 'build-asan');
if (process.env.CMAKE_CUDA_ARCHITECTURES) args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.CMAKE_CUDA_ARCHITECTURES}`);
const jobs = process.env.SPECDEC_JOBS || String(Math.max(1, require('node:os').availableParallelism()));
args.push('--parallel', jobs);
console.error(`[specdec] building the native addon: cmake-js ${args.slice(1).join(' ')}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('[specdec] the native build failed (needs cmake >= 3.18 and a C++17 compiler)');
  process.exit(r.status ?? 1);
}
