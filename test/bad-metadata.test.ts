// Hyper-parameters out of range in an otherwise valid GGUF: each is a ModelFileError ERR_BAD_METADATA
// naming the key, found at load, before ggml sees it (a NaN RMS epsilon used to pass loading and abort
// the process in ggml's GGML_ASSERT(eps >= 0.0f) at the first evaluation). Special-token ids outside the
// vocabulary are ignored, as llama.cpp ignores them.
import { expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { loadModel, ModelFileError } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { GgufMetaInput, gv, rewriteGgufMetadata } from './utils/gguf-writer';
import { describeShared } from './utils/shared';

const run = promisify(execFile);

describeShared('bad hyper-parameters', (dir) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-badmeta-'));
  const vocab = path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf');
  const good = () => cachedRandomModel({ arch: 'llama', vocabFrom: vocab, type: 'f16' });
  let n = 0;
  const variant = async (changes: Record<string, GgufMetaInput | undefined>) => rewriteGgufMetadata(await good(), path.join(tmp, `v${n++}.gguf`), changes);

  // [changes, the key the message must name]
  const cases: Array<[string, Record<string, GgufMetaInput | undefined>, string]> = [
    ['NaN RMS epsilon', { 'llama.attention.layer_norm_rms_epsilon': gv.f32(NaN) }, 'llama.attention.layer_norm_rms_epsilon'],
    ['negative RMS epsilon', { 'llama.attention.layer_norm_rms_epsilon': gv.f32(-1) }, 'llama.attention.layer_norm_rms_epsilon'],
    ['infinite RMS epsilon (f64)', { 'llama.attention.layer_norm_rms_epsilon': gv.f64(Infinity) }, 'llama.attention.layer_norm_rms_epsilon'],
    ['context length 0', { 'llama.context_length': gv.u32(0) }, 'llama.context_length'],
    ['key length whose product with the head count wraps 32 bits', { 'llama.attention.key_length': gv.u32(2 ** 30), 'llama.attention.value_length': gv.u32(2 ** 30), 'llama.rope.dimension_count': gv.u32(2 ** 30) }, 'llama.attention.key_length'],
    ['key length 0', { 'llama.attention.key_length': gv.u32(0), 'llama.attention.value_length': gv.u32(0), 'llama.rope.dimension_count': gv.u32(0) }, 'llama.attention.key_length'],
    ['key length x head count above the limit, each in range', { 'llama.attention.head_count': gv.u32(4096), 'llama.attention.head_count_kv': gv.u32(4096), 'llama.embedding_length': gv.u32(4096 * 64), 'llama.attention.key_length': gv.u32(4096), 'llama.attention.value_length': gv.u32(4096), 'llama.rope.dimension_count': gv.u32(4096) }, 'llama.attention.key_length'],
    ['more KV heads than heads', { 'llama.attention.head_count_kv': gv.u32(8) }, 'llama.attention.head_count_kv'],
    ['NaN rope base', { 'llama.rope.freq_base': gv.f32(NaN) }, 'llama.rope.freq_base'],
    ['zero rope base', { 'llama.rope.freq_base': gv.f32(0) }, 'llama.rope.freq_base'],
    ['negative rope scaling factor', { 'llama.rope.scaling.factor': gv.f32(-2) }, 'llama.rope.scaling.factor'],
    ['NaN attention scale', { 'llama.attention.scale': gv.f32(NaN) }, 'llama.attention.scale'],
    ['original context length 0', { 'llama.rope.scaling.original_context_length': gv.u32(0) }, 'llama.rope.scaling.original_context_length'],
    ['infinite yarn attention factor', { 'llama.rope.scaling.type': 'yarn', 'llama.rope.scaling.factor': gv.f32(4), 'llama.rope.scaling.attn_factor': gv.f32(Infinity) }, 'llama.rope.scaling.attn_factor'],
  ];

  for (const [name, changes, key] of cases) {
    it(`${name}: ERR_BAD_METADATA naming ${key}`, async () => {
      const err = await loadModel(await variant(changes)).then(async (m) => { await m.dispose(); return 'loaded'; }, (e: unknown) => e);
      expect(err).toBeInstanceOf(ModelFileError);
      expect(err).toMatchObject({ code: 'ERR_BAD_METADATA', message: expect.stringContaining(`'${key}'`) });
    });
  }

  it('a NaN RMS epsilon no longer aborts the process at the first evaluation (child process)', async () => {
    const f = await variant({ 'llama.attention.layer_norm_rms_epsilon': gv.f32(NaN) });
    // ts-jest is not in the child: it runs the compiled library (dist/, as the CLI tests do)
    const dist = path.join(__dirname, '..', 'dist', 'index.js');
    const script = `
      const { loadModel } = require(${JSON.stringify(dist)});
      (async () => {
        try {
          const m = await loadModel(${JSON.stringify(f)});
          const s = await m.createSession({ contextSize: 64 });
          await s.generate([1, 2, 3], { maxTokens: 2 }).result();
          console.log('generated');
        } catch (e) { console.log('error ' + e.code); }
      })();`;
    const r = await run(process.execPath, ['-e', script]).then((x) => ({ code: 0, stdout: x.stdout }), (e: { code: number; signal: string; stdout: string }) => ({ code: e.code ?? e.signal, stdout: e.stdout }));
    expect(r).toEqual({ code: 0, stdout: 'error ERR_BAD_METADATA\n' });
  });

  it('a special-token id outside the vocabulary, or not an integer, is ignored: the default stays', async () => {
    const base = await loadModel(await good());
    const { bos, eos } = base.info.tokenizer;
    const nVocab = base.info.vocabSize;
    await base.dispose();
    const m = await loadModel(await variant({
      'tokenizer.ggml.bos_token_id': gv.u32(nVocab), 'tokenizer.ggml.eos_token_id': gv.f32(2.5), 'tokenizer.ggml.eot_token_id': gv.u32(nVocab + 7),
    }));
    try {
      expect([m.info.tokenizer.bos, m.info.tokenizer.eos]).toEqual([bos, eos]);
      for (const t of m.info.tokenizer.eogTokens) expect(Number.isInteger(t) && t >= 0 && t < nVocab).toBe(true);
      const s = await m.createSession({ contextSize: 64 });
      const r = await s.generate('hello', { maxTokens: 3, ignoreEos: true }).result();
      expect(r.tokens).toHaveLength(3);
    } finally {
      await m.dispose();
    }
  });

  it('the unchanged model still loads and generates', async () => {
    const m = await loadModel(await variant({}));
    const s = await m.createSession({ contextSize: 64 });
    const r = await s.generate([1, 100, 200], { maxTokens: 4 }).result();
    expect(r.tokens).toHaveLength(4);
    await m.dispose();
  });
});
