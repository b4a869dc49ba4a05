#!/usr/bin/env node
// The JS-level GPU check: loads models with backend 'cuda' (and 'auto') through the public API of a
// CUDA build (SPECDEC_BINDING=build-cuda/Release/specdec.node), decodes greedily and compares with
// llama.cpp's CPU reference tokens, checks how batched and one-token logits compare on the GPU, and
// that abort and dispose work there. Inputs: a folder with MODEL.gguf, MODEL.prompts, MODEL.ref.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { loadModel, backends } = require('../dist/index.js');

async function main(dir) {
  console.log('backends:', JSON.stringify(backends()));
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.gguf'))) {
    const name = f.replace(/\.gguf$/, '');
    const promptsFile = path.join(dir, `${name}.prompts`);
    if (!fs.existsSync(promptsFile)) continue;
    const prompts = fs.readFileSync(promptsFile, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    const refs = fs.readFileSync(path.join(dir, `${name}.ref`), 'utf8').split('\n').map((l) => (l.trim() ? l.trim().split(' ').map(Number) : []));
    for (const backend of ['cuda', 'auto']) {
      const m = await loadModel(path.join(dir, f), { backend });
      const s = await m.createSession({ contextSize: Math.min(1024, m.info.contextLength) });
      let same = 0;
      const t0 = performance.now();
      let n = 0;
      for (let i = 0; i < prompts.length; i++) {
        s.truncate(0);
        const r = await s.generate(prompts[i], { maxTokens: refs[i].length || 64 }).result();
        n += r.tokens.length;
        if (JSON.stringify(r.tokens.slice(0, refs[i].length)) === JSON.stringify(refs[i]) && (refs[i].length > 0 || r.stats.stopReason === 'eos')) same++;
      }
      const ms = performance.now() - t0;
      console.log(`${name} backend=${backend} -> ${m.info.backend}/${m.info.device}: identical to llama.cpp (CPU) ${same}/${prompts.length}, ${(n * 1000 / ms).toFixed(0)} tok/s end to end`);
      if (backend === 'cuda') {
        // batched vs one-token logits on the GPU
        const p = prompts[0];
        const k = Math.max(1, p.length >> 1);
        s.truncate(0);
        await s.evaluate(p.slice(0, k));
        const batched = await s.evaluate(p.slice(k), { allLogits: true });
        s.truncate(k);
        const V = m.info.vocabSize;
        let bitEqual = 0; let argmaxEqual = 0; let maxDiff = 0;
        for (let i = k; i < p.length; i++) {
          const one = await s.evaluate([p[i]]);
          const row = batched.subarray((i - k) * V, (i - k + 1) * V);
          let eq = true; let a = 0; let b = 0;
          for (let j = 0; j < V; j++) {
            if (one[j] !== row[j]) eq = false;
            maxDiff = Math.max(maxDiff, Math.abs(one[j] - row[j]));
            if (one[j] > one[a]) a = j;
            if (row[j] > row[b]) b = j;
          }
          bitEqual += eq; argmaxEqual += a === b;
        }
        console.log(`${name} cuda batch invariance: ${bitEqual}/${p.length - k} rows bit-equal, ${argmaxEqual} same argmax, max |diff| ${maxDiff.toExponential(2)}`);
        // abort on the GPU
        const ac = new AbortController();
        const g = s.generate(prompts[0], { maxTokens: 100000, ignoreEos: true, signal: ac.signal });
        let seen = 0;
        try { for await (const c of g) { seen += c.tokens.length; if (seen > 10) ac.abort(new Error('stop')); } } catch (e) { console.log(`${name} cuda abort: rejected with "${e.message}" after ${g.tokens.length} tokens`); }
      }
      await m.dispose();
    }
  }
}
main(process.argv[2] || '.device').catch((e) => { console.error(e); process.exit(1); });
