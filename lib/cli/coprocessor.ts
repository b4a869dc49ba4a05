/**
 * `specdec train-coprocessor` (the KV-cache coprocessor, lib/train.ts trainCoprocessor) and
 * `specdec perplexity` (Session.perplexity):
 *
 *   specdec train-coprocessor --model T.gguf --corpus PATH --latents 16 --out C.gguf [--minutes N] [--tokens N] [--json]
 *   specdec perplexity --model T.gguf --file F [--context N] [--coprocessor C.gguf --latents N --augment-every N --ahead N] [--json]
 */
import { readFileSync } from 'node:fs';
import { loadModel } from '../index';
import { trainCoprocessor } from '../train';
import { flagReaders, runTraining, trainingFlags } from './train';

export const COPROCESSOR_USAGE = `  specdec train-coprocessor --model PATH --corpus PATH --out FILE [options]
      --corpus PATH       text file, directory of them, or JSONL with a "text" field (repeatable)
      --out FILE          the coprocessor file to write (GGUF, architecture specdec-coprocessor)
      --latents N         latent embeddings per augmentation (default 16)
      --ahead N           tokens after each augmentation point whose loss trains it (default 16)
      --rank R            rank of the adapters on the model's layers (default 8)
      --minutes N --tokens N --learning-rate X --seed S --threads N --json
  specdec perplexity --model PATH --file F [options]
      --context N         tokens per chunk (default: the context size)
      --augment-every N   score only the --ahead tokens after a point every N tokens (default 64 with --coprocessor)
      --ahead N           tokens scored after each point (default 16)
      --coprocessor F     augment the cache at each point with this coprocessor first (train-coprocessor's)
      --latents N         latents per augmentation (default: the file's)
      --threads N --context-size N --json (prints {"tokens","nll","ppl"})
`;

export async function trainCoprocessorCommand(
  flags: Map<string, string[]>, usageError: (msg: string) => Error, checkFile: (flag: string, path: string) => void,
): Promise<number> {
  const { num, modelPath, corpus, out, json } = trainingFlags(flags, usageError);
  for (const n of ['latents', 'ahead', 'rank', 'learning-rate', 'seed', 'threads']) num(n);
  checkFile('--model', modelPath);
  const model = await loadModel(modelPath);
  const opt = (flag: string, key: string) => (num(flag) !== undefined ? { [key]: num(flag) } : {});
  return runTraining(model, json, (signal, onProgress) => trainCoprocessor(model, {
    corpus, out, signal, onProgress,
    ...opt('minutes', 'minutes'), ...opt('tokens', 'tokens'), ...opt('latents', 'latents'), ...opt('ahead', 'ahead'), ...opt('rank', 'rank'),
    ...opt('learning-rate', 'learningRate'), ...opt('seed', 'seed'), ...opt('threads', 'threads'),
  }), (report) => (
    `wrote ${report.out}: ${report.tokens} ahead tokens in ${report.seconds.toFixed(0)} s; held-out ahead-token loss ` +
      `${report.validationLossBefore.toFixed(4)} -> ${report.validationLossAfter.toFixed(4)} (without augmentation ${report.validationLossBase.toFixed(4)})`
  ));
}

export async function perplexityCommand(
  flags: Map<string, string[]>, usageError: (msg: string) => Error, checkFile: (flag: string, path: string) => void,
  write: (s: string) => void,
): Promise<number> {
  const { one, num } = flagReaders(flags, usageError);
  const modelPath = one('model');
  if (!modelPath) throw usageError('--model PATH is required');
  const file = one('file');
  if (!file) throw usageError('--file F is required');
  const coproc = one('coprocessor');
  for (const n of ['context', 'augment-every', 'ahead', 'latents', 'threads', 'context-size']) num(n);
  if (!coproc && num('latents') !== undefined) throw usageError('--latents goes with --coprocessor');
  checkFile('--model', modelPath);
  checkFile('--file', file);
  if (coproc) checkFile('--coprocessor', coproc);
  const text = readFileSync(file, 'utf8');
  const model = await loadModel(modelPath, num('threads') !== undefined ? { threads: num('threads') } : {});
  try {
    const session = await model.createSession(num('context-size') !== undefined ? { contextSize: num('context-size') } : {});
    const r = await session.perplexity(text, {
      ...(num('context') !== undefined ? { context: num('context') } : {}),
      ...(num('augment-every') !== undefined ? { augmentEvery: num('augment-every') } : {}),
      ...(num('ahead') !== undefined ? { ahead: num('ahead') } : {}),
      ...(coproc ? { coprocessor: { file: coproc, ...(num('latents') !== undefined ? { latents: num('latents') } : {}) } } : {}),
    });
    await session.dispose();
    if (one('json') === 'true') {
      write(JSON.stringify({ tokens: r.tokens, nll: r.nll, ppl: r.ppl, augmentations: r.augmentations, msPerAugmentation: r.msPerAugmentation }) + '\n');
    } else {
      write(`perplexity ${r.ppl.toFixed(4)} (mean NLL ${r.nll.toFixed(4)} nats over ${r.tokens} tokens` +
        `${r.augmentations > 0 ? `; ${r.augmentations} augmentations, ${r.msPerAugmentation.toFixed(1)} ms each` : ''})\n`);
    }
    return 0;
  } finally {
    await model.dispose();
  }
}
