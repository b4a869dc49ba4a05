// Reference tokenizer: node-llama-cpp 3.21.1 (ESM-only), run as a child process by the jest tests.
// Usage: node test/utils/nlc-tokenize.mjs <model.gguf>   (stdin: JSON array of strings, or of
//   {text, special} objects; stdout: JSON {ids: number[][], detok: string[], detokSpecial: string[],
//   tokens: {bos, eos, eot, nl}} (null where the model has none))
// `special` (default false) is passed to model.tokenize(text, special); detok is model.detokenize(ids)
// and detokSpecial is model.detokenize(ids, true).
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';

const modelPath = process.argv[2];
if (!modelPath) {
  console.error('usage: node nlc-tokenize.mjs <model.gguf> < strings.json');
  process.exit(2);
}

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;
const items = JSON.parse(input);

const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, vocabOnly: true });
const ids = [];
const detok = [];
const detokSpecial = [];
for (const item of items) {
  const text = typeof item === 'string' ? item : item.text;
  const special = typeof item === 'string' ? false : Boolean(item.special);
  const t = Array.from(model.tokenize(text, special));
  ids.push(t);
  detok.push(model.detokenize(t));
  detokSpecial.push(model.detokenize(t, true));
}
const t = model.tokens;
const tokens = { bos: t.bos ?? null, eos: t.eos ?? null, eot: t.eot ?? null, nl: t.nl ?? null };
process.stdout.write(JSON.stringify({ ids, detok, detokSpecial, tokens }));
await model.dispose();
await llama.dispose();
