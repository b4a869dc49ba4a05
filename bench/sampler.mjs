#!/usr/bin/env node
// npm run bench:sampler — what the sampler chain costs against a forward pass, with every filter
// setting (top-k off included), on the code target (8,192 tokens) and on a random qwen2 model with
// Qwen2's 151,936-token vocabulary (written once into bench/tmp/models).
//
// Two measures, each the median of BENCH_REPS runs in this one process:
//  1. the chain alone (_samplerDistribution test hook: one warm call on fixed logits, many repetitions),
//     as a fraction of that model's one-token decode measured in the same run;
//  2. end to end: autoregressive decode tok/s of each setting over greedy decoding, same session,
//     same prompts (BENCH_TOKENS tokens, ignoring EOS).
// Writes bench/results/sampler.json and .md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { codeTargetQ8, root, shared } from './models.mjs';

const REPS = Number(process.env.BENCH_REPS ?? 5);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 96);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const SETTINGS = [
  ['greedy', { temperature: 0 }],
  ['defaults (top-k 40, top-p 0.95, min-p 0.05)', { temperature: 0.8 }],
  ['top-k off (top-p 0.95, min-p 0.05)', { temperature: 0.8, topK: 0 }],
  ['OpenAI-shaped (top-k off, top-p 0.95, min-p off)', { temperature: 0.8, topK: 0, minP: 0 }],
  ['min-p 0.05 alone', { temperature: 0.8, topK: 0, topP: 1 }],
  ['every filter off', { temperature: 0.8, topK: 0, topP: 1, minP: 0 }],
];

/** A random qwen2 model with Qwen2's vocabulary (151,936 tokens), written on first use. */
function bigVocabModel() {
  const file = path.join(root, 'bench', 'tmp', 'models', 'random-qwen2-151936.gguf');
  if (existsSync(file)) return file;
  mkdirSync(path.dirname(file), { recursive: true });
  const outDir = path.join(root, 'bench', 'tmp', 'ts');
  if (!existsSync(path.join(outDir, 'random-model.js'))) {
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const p = spawnSync(process.execPath, [tsc, '--outDir', outDir, '--module', 'commonjs', '--target', 'ES2022', '--esModuleInterop',
      '--skipLibCheck', '--types', 'node', path.join(root, 'test', 'utils', 'random-model.ts')], { encoding: 'utf8' });
    if (p.status !== 0) throw new Error(`compiling test/utils/random-model.ts failed:\n${p.stdout}${p.stderr}`);
  }
  const opts = { path: file, arch: 'qwen2', vocabFrom: path.join(shared, 'models', 'vocab', 'ggml-vocab-qwen2.gguf'), type: 'q8_0',
    nEmbd: 512, nLayer: 4, nHead: 8, nHeadKv: 4, nFf: 1536, nCtx: 2048, seed: 11 };
  const script = `require(${JSON.stringify(path.join(outDir, 'random-model.js'))}).writeRandomModel(${JSON.stringify(opts)}).catch((e) => { console.error(e); process.exit(1); })`;
  process.stderr.write(`writing ${path.relative(root, file)}\n`);
  const p = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'] });
  if (p.status !== 0) throw new Error('writing the random 151,936-token model failed');
  return file;
}

const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
const { binding } = await import(path.join(root, 'dist', 'binding.js'));
const b = binding();
const prompts = ['def parse_args(argv):\n    ', 'class LRUCache:\n    def __init__(self, capacity):\n', 'import os\nimport sys\n\n\ndef main():\n'];

const results = { machine: cpus()[0]?.model ?? 'unknown', cores: cpus().length, reps: REPS, tokens: TOKENS, models: [] };
for (const [label, file] of [['code target (8,192 tokens)', codeTargetQ8], ['random qwen2, 4 layers, d 512 (151,936 tokens)', bigVocabModel()]]) {
  const model = await loadModel(file);
  const session = await model.createSession({ threads: 1, contextSize: 1024 });
  const V = model.info.vocabSize;
  const decode = {};
  for (const [name, o] of SETTINGS) decode[name] = [];
  for (let r = 0; r < REPS; ++r) {
    for (const [name, o] of SETTINGS) {
      const tps = [];
      for (const p of prompts) {
        session.truncate(0);
        const res = await session.generate(p, { maxTokens: TOKENS, ignoreEos: true, seed: 1 + r, method: 'autoregressive', ...o }).result();
        tps.push(res.stats.decodeTokensPerSecond);
      }
      decode[name].push(median(tps));
    }
  }
  const greedyMsPerToken = 1000 / median(decode.greedy);
  // the chain alone on logits shaped like this model's: N(0, 3) as a stand-in for a peaked row
  let seed = 7;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return (seed + 0.5) / 4294967296; };
  const logits = new Float32Array(V);
  for (let i = 0; i < V; ++i) logits[i] = 3 * Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd());
  const chain = {};
  for (const [name, o] of SETTINGS) {
    const ns = [];
    for (let r = 0; r < REPS; ++r) ns.push(b._samplerDistribution(logits, o, new Int32Array(0), V > 50000 ? 20 : 200).nsPerCall);
    chain[name] = median(ns);
  }
  const rows = SETTINGS.map(([name]) => ({
    setting: name,
    decodeTokensPerSecond: median(decode[name]),
    decodeOverGreedy: median(decode[name]) / median(decode.greedy),
    chainUs: chain[name] / 1000,
    chainShareOfDecode: chain[name] / 1e6 / greedyMsPerToken,
  }));
  results.models.push({ model: label, vocab: V, greedyMsPerToken, rows });
  await model.dispose();
}

mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
writeFileSync(path.join(root, 'bench', 'results', 'sampler.json'), JSON.stringify(results, null, 2) + '\n');
let md = `# bench:sampler\n\n${results.machine}, ${results.cores} cores, 1 thread; medians of ${REPS} runs; decode of ${TOKENS} tokens on 3 prompts.\n`;
for (const m of results.models) {
  md += `\n## ${m.model}\n\n| setting | decode / greedy decode | chain per token / one-token decode |\n|---|---|---|\n`;
  for (const r of m.rows) md += `| ${r.setting} | ${r.decodeOverGreedy.toFixed(2)}× | ${(100 * r.chainShareOfDecode).toFixed(1)} % |\n`;
}
writeFileSync(path.join(root, 'bench', 'results', 'sampler.md'), md);
process.stdout.write(md);
