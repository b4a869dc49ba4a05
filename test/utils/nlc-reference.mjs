#!/usr/bin/env node
// llama.cpp's greedy reference through node-llama-cpp 3.21.1 (CPU prebuilt binary).
//
// Run as a child process (node-llama-cpp is ESM-only; jest runs CommonJS):
//   echo '{"model":"m.gguf","prompts":[[1,403]],"nTokens":64}' | node test/utils/nlc-reference.mjs
//
// Request (JSON on stdin):
//   { model: string,            // path of a GGUF model
//     prompts: number[][],      // token ids, evaluated exactly as given (include BOS yourself when wanted)
//     nTokens: number,          // greedy tokens to generate per prompt (fewer when an end-of-generation token comes)
//     threads?: number,         // default 1. The committed code-target reference needs 2 (Q8_0 near-ties: with 1 or 4
//                               // threads 2 of its 12 continuations differ); stories260K's is the same with 1, 2 and 4.
//                               // More threads than free cores makes ggml's spinning threads very slow.
//     contextSize?: number }    // default: the model's training context, capped at 4096
// Response: one JSON line on stdout
//   { results: { tokens: number[] }[], info: { contextSize, threads, trainContextSize, loadMs, evalMs[] } }
// On failure: one JSON line { error: string } on stdout and exit code 1.
//
// Method (the one used for ../shared/models/reference/*-greedy.json, see shared/models/PROVENANCE.md):
// getLlama({gpu:false}), loadModel, createContext({contextSize}), getSequence(),
// for each prompt `sequence.evaluate(tokens, {temperature: 0})`, collecting tokens until nTokens;
// node-llama-cpp's evaluate ends by itself (without yielding it) when the sampled token is an
// end-of-generation token (model.isEogToken), so the EOG token is never part of the output.
// The sequence is cleared (clearHistory) before the next prompt.
import { getLlama } from 'node-llama-cpp';

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function fail(message) {
  process.stdout.write(JSON.stringify({ error: String(message) }) + '\n');
  process.exitCode = 1;
}

async function main() {
  const req = JSON.parse(await readStdin());
  if (typeof req.model !== 'string') throw new Error('request.model must be a path string');
  if (!Array.isArray(req.prompts)) throw new Error('request.prompts must be an array of token id arrays');
  const nTokens = req.nTokens | 0;
  const threads = req.threads ?? 1;

  const t0 = performance.now();
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: req.model });
  const loadMs = performance.now() - t0;
  const trainContextSize = model.trainContextSize;
  const contextSize = req.contextSize ?? Math.min(trainContextSize || 4096, 4096);
  const context = await model.createContext({ contextSize, threads });
  const sequence = context.getSequence();

  const results = [];
  const evalMs = [];
  try {
    for (const prompt of req.prompts) {
      if (!Array.isArray(prompt) || prompt.length === 0) throw new Error('each prompt must be a non-empty token id array');
      if (prompt.length + nTokens > context.contextSize)
        throw new Error(`prompt (${prompt.length}) + nTokens (${nTokens}) exceeds the context size ${context.contextSize}`);
      const t1 = performance.now();
      const tokens = [];
      if (nTokens > 0) {
        for await (const t of sequence.evaluate(prompt, { temperature: 0 })) {
          tokens.push(t);
          if (tokens.length >= nTokens) break;
        }
      }
      evalMs.push(performance.now() - t1);
      results.push({ tokens });
      await sequence.clearHistory();
    }
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
  const info = { contextSize: context.contextSize, threads, trainContextSize, loadMs, evalMs };
  process.stdout.write(JSON.stringify({ results, info }) + '\n');
}

main().catch((e) => fail(e && e.stack ? e.stack : e));
