#!/usr/bin/env node
// The GPU check of tree verification: on a CUDA build (SPECDEC_BINDING=build-cuda/Release/specdec.node),
// every method that needs no draft model decodes greedily with backend 'cuda' and is compared with
// autoregressive decoding on the same backend (token identity per prompt, τ, tokens/s). The CUDA
// backend is not batch-invariant (README, GPU), so differences at near-ties are possible and reported.
// Inputs: a folder with MODEL.gguf and MODEL.prompts (one prompt per line, token ids).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { loadModel } = require('../dist/index.js');

async function main(dir) {
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.gguf'))) {
    const name = f.replace(/\.gguf$/, '');
    const promptsFile = path.join(dir, `${name}.prompts`);
    if (!fs.existsSync(promptsFile)) continue;
    const prompts = fs.readFileSync(promptsFile, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    const m = await loadModel(path.join(dir, f), { backend: 'cuda' });
    const s = await m.createSession({ contextSize: Math.min(1024, m.info.contextLength) });
    const run = async (method) => {
      const out = [];
      let tokens = 0, ms = 0, acc = 0, passes = 0;
      for (const p of prompts) {
        s.truncate(0);
        const r = await s.generate(p, { maxTokens: 96, method, ignoreEos: true, draftMax: method === 'autoregressive' ? undefined : 16 }).result();
        out.push(r.tokens);
        tokens += r.stats.generatedTokens; ms += r.stats.decodeMs; acc += r.stats.acceptedTokens; passes += r.stats.verifyPasses;
      }
      return { out, tps: (tokens * 1000) / ms, tau: passes ? (acc + passes) / passes : 0 };
    };
    const ar = await run('autoregressive');
    console.log(`${name} on ${m.info.device}: autoregressive ${ar.tps.toFixed(0)} tok/s`);
    for (const method of ['lookup', 'token-recycling', 'aded', 'rasd', 'auto']) {
      const r = await run(method);
      const same = r.out.filter((o, i) => JSON.stringify(o) === JSON.stringify(ar.out[i])).length;
      console.log(`${name} ${method}: identical to autoregressive on ${same}/${prompts.length} prompts, tau ${r.tau.toFixed(2)}, ${r.tps.toFixed(0)} tok/s (${(r.tps / ar.tps).toFixed(2)}x)`);
    }
    await s.dispose();
    await m.dispose();
  }
}

main(process.argv[2] ?? '.device').catch((e) => { console.error(e); process.exit(1); });
