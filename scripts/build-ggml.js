#!/usr/bin/env node
// Builds ggml's static libraries with CMake for the node-gyp build (binding.gyp), with the
// same options as CMakeLists.txt but portable (no -march=native: AVX2/FMA/F16C baseline on
// x86-64), as prebuilt binaries must run on any machine of their platform.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { fetchGgml } = require('./fetch-ggml');

const root = path.resolve(__dirname, '..');
const out = path.resolve(process.argv[2] || path.join(root, 'build', 'ggml-static'));
if (!fetchGgml()) process.exit(1);
const src = path.join(root, 'deps', 'llama.cpp', 'ggml');
const run = (args) => execFileSync('cmake', args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
run(['-S', src, '-B', out, '-DCMAKE_BUILD_TYPE=Release', '-DBUILD_SHARED_LIBS=OFF', '-DCMAKE_POSITION_INDEPENDENT_CODE=ON',
  '-DGGML_NATIVE=OFF', '-DGGML_LLAMAFILE=ON', '-DGGML_OPENMP=OFF', '-DGGML_BACKEND_DL=OFF', '-DGGML_BUILD_TESTS=OFF',
  '-DGGML_BUILD_EXAMPLES=OFF', '-DGGML_CCACHE=OFF']);
run(['--build', out, '--config', 'Release', '--target', 'ggml', 'ggml-base', 'ggml-cpu', '--parallel', String(require('node:os').availableParallelism())]);
// node-gyp reads the library paths from this line
process.stdout.write(['ggml', 'ggml-base', 'ggml-cpu'].map((l) => path.join(out, 'src', `lib${l}.a`)).join(' '));
