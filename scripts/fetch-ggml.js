#!/usr/bin/env node
// Populates the ggml sources (git submodule deps/llama.cpp, pinned to llama.cpp
// 80fb11ac73e66d89eae2c6a91d8a77428fa733ed) without network access: that commit is exactly
// the git bundle shipped inside the npm package node-llama-cpp@3.21.1, so the submodule's
// URL is pointed at that bundle in the local git config and updated from it.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const ggmlDir = path.join(root, 'deps', 'llama.cpp', 'ggml');

function haveSources() {
  return fs.existsSync(path.join(ggmlDir, 'CMakeLists.txt'));
}

function findBundle() {
  const candidates = [];
  if (process.env.SPECDEC_LLAMA_BUNDLE) candidates.push(process.env.SPECDEC_LLAMA_BUNDLE);
  try {
    candidates.push(path.join(path.dirname(require.resolve('node-llama-cpp/package.json', { paths: [root] })), 'llama', 'gitRelease.bundle'));
  } catch {
    // not installed
  }
  candidates.push(path.join(root, 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle'));
  return candidates.find((p) => fs.existsSync(p));
}

function git(args) {
  execFileSync('git', args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
}

function fetchGgml() {
  if (haveSources()) return true;
  if (!fs.existsSync(path.join(root, '.git'))) {
    console.error('[specdec] ggml sources are missing and this is not a git checkout: cannot populate deps/llama.cpp');
    return false;
  }
  const bundle = findBundle();
  if (!bundle) {
    console.error('[specdec] ggml sources are missing and node-llama-cpp@3.21.1 (whose git bundle holds them) is not installed.\n' +
      '          Run `npm install` (it installs the devDependencies), or set SPECDEC_LLAMA_BUNDLE to a llama.cpp git bundle.');
    return false;
  }
  console.error(`[specdec] populating deps/llama.cpp from ${path.relative(root, bundle)}`);
  git(['submodule', 'init', 'deps/llama.cpp']);
  git(['config', 'submodule.llama.cpp.url', bundle]);
  git(['-c', 'protocol.file.allow=always', 'submodule', 'update', 'deps/llama.cpp']);
  return haveSources();
}

module.exports = { fetchGgml, haveSources };

if (require.main === module) {
  process.exit(fetchGgml() ? 0 : 1);
}
