// Writes the seed corpus of the GGUF-loader fuzz harness (tools/fuzz/fuzz_load.cpp): tiny valid
// models (a 64-token vocabulary, 32-wide, one or two layers, every architecture and a few weight
// types; each a few KB to a few tens of KB) and the test writer's corrupt variants of them
// (test/utils/gguf-writer.ts: truncations, bad magic and version, missing or misshapen tensors,
// offsets past the end, hyper-parameters out of range as in test/bad-metadata.test.ts).
//
//   npx tsc -p tools/fuzz/tsconfig.json && node build-fuzz/ts/tools/fuzz/make-corpus.js OUT_DIR
//
// Not committed: scripts/fuzz.sh writes it as the seed corpus, and test/fuzz-replay.test.ts writes it
// into a temporary folder and replays it on CI (the files are deterministic: fixed seeds).
import * as fs from 'fs';
import * as path from 'path';
import { gv, GgufMetaInput, rewriteGgufMetadata, writeCorruptVariants, writeGguf } from '../../test/utils/gguf-writer';
import { RandomModelArch, RandomModelType, writeRandomModel } from '../../test/utils/random-model';

/** Writes the corpus into `out` (created if missing); returns the files written, sorted. */
export async function writeLoadCorpus(out: string): Promise<string[]> {
  fs.mkdirSync(out, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(out, '.tmp-'));

  // a vocabulary-only GGUF with 64 tokens (SentencePiece-style: unknown, BOS, EOS, then pieces)
  const vocab = path.join(tmp, 'vocab.gguf');
  const tokens = ['<unk>', '<s>', '</s>'];
  for (let i = 3; i < 64; i++) tokens.push(i < 29 ? '\u2581' + String.fromCharCode(94 + i) : String.fromCharCode(32 + i));
  await writeGguf(vocab, {
    metadata: [
      ['general.architecture', gv.str('llama')],
      ['tokenizer.ggml.model', gv.str('llama')],
      ['tokenizer.ggml.tokens', gv.arr('string', tokens)],
      ['tokenizer.ggml.scores', gv.arr('f32', tokens.map((_, i) => -i))],
      ['tokenizer.ggml.token_type', gv.arr('i32', tokens.map((_, i) => (i < 3 ? 3 : 1)))],
      ['tokenizer.ggml.bos_token_id', gv.u32(1)],
      ['tokenizer.ggml.eos_token_id', gv.u32(2)],
    ],
    tensors: [],
  });

  // the first is the base of the variants below
  const models: Array<[RandomModelArch, RandomModelType, Record<string, unknown>]> = [
    ['llama', 'q8_0', {}], ['llama', 'f32', {}], ['llama', 'f16', { tiedEmbeddings: true }], ['llama', 'q4_0', {}],
    ['qwen2', 'f32', {}], ['qwen3', 'bf16', {}],
  ];
  const written: string[] = [];
  for (const [arch, type, extra] of models) {
    const p = path.join(out, `${arch}-${type}.gguf`);
    await writeRandomModel({ path: p, arch, type, vocabFrom: vocab, nEmbd: 32, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: type === 'f32' ? 32 : 64, nCtx: 64, ...extra });
    written.push(p);
  }
  // the test writer's corrupt variants of one model
  const variants = await writeCorruptVariants(written[0], tmp);
  for (const [kind, p] of Object.entries(variants)) fs.renameSync(p, path.join(out, `corrupt-${kind}.gguf`));
  // hyper-parameters out of range (test/bad-metadata.test.ts), in the llama Q8_0 and qwen3 models
  const A = 'llama.';
  const changes: Array<[string, string, Record<string, GgufMetaInput | undefined>]> = [
    ['nan-rms-eps', written[0], { [A + 'attention.layer_norm_rms_epsilon']: gv.f32(NaN) }],
    ['negative-rms-eps', written[0], { [A + 'attention.layer_norm_rms_epsilon']: gv.f32(-1) }],
    ['context-length-0', written[0], { [A + 'context_length']: gv.u32(0) }],
    ['key-length-wraps', written[0], { [A + 'attention.key_length']: gv.u32(2 ** 30), [A + 'attention.value_length']: gv.u32(2 ** 30), [A + 'rope.dimension_count']: gv.u32(2 ** 30) }],
    ['kv-heads-above-heads', written[0], { [A + 'attention.head_count_kv']: gv.u32(8) }],
    ['zero-rope-base', written[0], { [A + 'rope.freq_base']: gv.f32(0) }],
    ['yarn', written[0], { [A + 'rope.scaling.type']: 'yarn', [A + 'rope.scaling.factor']: gv.f32(4), [A + 'rope.scaling.original_context_length']: gv.u32(16) }],
    ['linear-rope', written[0], { [A + 'rope.scaling.type']: 'linear', [A + 'rope.scaling.factor']: gv.f32(2) }],
    ['vocab-size-mismatch', written[0], { [A + 'vocab_size']: gv.u32(65) }],
    ['no-tokenizer-tokens', written[0], { 'tokenizer.ggml.tokens': undefined, 'tokenizer.ggml.scores': undefined, 'tokenizer.ggml.token_type': undefined }],
    ['bos-out-of-vocab', written[0], { 'tokenizer.ggml.bos_token_id': gv.u32(64), 'tokenizer.ggml.eos_token_id': gv.f32(2.5) }],
    ['block-count-3', written[0], { [A + 'block_count']: gv.u32(3) }],
    ['qwen3-key-length-odd', written[written.length - 1], { 'qwen3.attention.key_length': gv.u32(15) }],
  ];
  for (const [name, src, c] of changes) await rewriteGgufMetadata(src, path.join(out, `meta-${name}.gguf`), c);
  fs.rmSync(tmp, { recursive: true, force: true });
  return fs.readdirSync(out).filter((f) => f.endsWith('.gguf')).sort();
}

if (require.main === module) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: make-corpus OUT_DIR');
  writeLoadCorpus(out).then((files) => {
    let total = 0;
    for (const f of files) total += fs.statSync(path.join(out, f)).size;
    console.log(`${files.length} files, ${total} bytes in ${out}`);
  }).catch((e) => { console.error(e); process.exit(1); });
}
