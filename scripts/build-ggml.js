#!/usr/bin/env node
// Builds ggml's static libraries with CMake for the node-gyp build (binding.gyp): the project's
// own CMakeLists.txt (outside cmake-js it configures ggml only) with SPECDEC_NATIVE=OFF, so the
// libraries are portable (AVX2/FMA/F16C baseline on x86-64) as prebuilt binaries must be.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { fetchGgml } = require('./fetch-ggml');

const root = path.resolve(__dirname, '..');
const out = path.resolve(process.argv[2] || path.join(root, 'build', 'ggml-static'));
if (!fetchGgml()) process.exit(1);
const run = (args) => execFileSync('cmake', args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
run(['-S', root, '-B', out, '-DCMAKE_BUILD_TYPE=Release', '-DSPECDEC_NATIVE=OFF']);
run(['--build', out, '--config', 'Release', '--target', 'ggml', 'ggml-base', 'ggml-cpu', 'ggml-rpc', '--parallel', String(require('node:os').availableParallelism())]);
// node-gyp reads the library paths from this line
// (a backend defined in its own folder, ggml-rpc, puts its library there)
const lib = (l) => [path.join(out, 'ggml', 'src', `lib${l}.a`), path.join(out, 'ggml', 'src', l, `lib${l}.a`)].find((f) => fs.existsSync(f));
const libs = ['ggml', 'ggml-cpu', 'ggml-rpc', 'ggml-base'].map((l) => {
  const f = lib(l);
  if (!f) throw new Error(`[specdec] build-ggml: lib${l}.a not found under ${out}`);
  return f;
});
process.stdout.write(libs.join(' '));
