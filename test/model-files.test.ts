// Bad model files give typed errors naming the problem, and none of them can abort the process.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel, ModelFileError, UnsupportedArchitectureError } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { writeCorruptGguf } from './utils/gguf-writer';
import { describeShared } from './utils/shared';

describeShared('model file errors', (dir) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-bad-'));
  const vocab = path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf');
  const good = () => cachedRandomModel({ arch: 'llama', vocabFrom: vocab, type: 'f16' });

  it('missing file', async () => {
    await expect(loadModel(path.join(tmp, 'nope.gguf'))).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND', constructor: ModelFileError });
    await expect(loadModel(tmp)).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
  });

  it('not a GGUF file', async () => {
    const f = path.join(tmp, 'text.gguf');
    fs.writeFileSync(f, 'hello, I am not a model'.repeat(10));
    await expect(loadModel(f)).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
    const corrupt = await writeCorruptGguf(await good(), path.join(tmp, 'magic.gguf'), 'bad-magic');
    await expect(loadModel(corrupt.path)).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
  });

  it('truncated in the tensor data and in the header', async () => {
    for (const kind of ['truncated', 'truncated-header', 'data-out-of-bounds'] as const) {
      const c = await writeCorruptGguf(await good(), path.join(tmp, `${kind}.gguf`), kind);
      await expect(loadModel(c.path)).rejects.toMatchObject({ code: 'ERR_TRUNCATED_FILE' });
    }
  });

  it('unsupported version', async () => {
    const c = await writeCorruptGguf(await good(), path.join(tmp, 'version.gguf'), 'bad-version');
    await expect(loadModel(c.path)).rejects.toMatchObject({ code: 'ERR_BAD_METADATA', message: expect.stringContaining('version') });
  });

  it('unknown architecture', async () => {
    const c = await writeCorruptGguf(await good(), path.join(tmp, 'arch.gguf'), 'unknown-arch', { arch: 'mamba9' });
    const err = await loadModel(c.path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedArchitectureError);
    expect(err).toMatchObject({ code: 'ERR_UNSUPPORTED_ARCHITECTURE', message: expect.stringContaining("'mamba9'") });
  });

  it('missing tensor, named', async () => {
    const c = await writeCorruptGguf(await good(), path.join(tmp, 'missing.gguf'), 'missing-tensor', { tensor: 'blk.1.attn_k.weight' });
    await expect(loadModel(c.path)).rejects.toMatchObject({ code: 'ERR_MISSING_TENSOR', message: "missing tensor 'blk.1.attn_k.weight'" });
  });

  it('wrong tensor shape, with expected and found', async () => {
    const c = await writeCorruptGguf(await good(), path.join(tmp, 'shape.gguf'), 'wrong-shape', { tensor: 'blk.0.ffn_up.weight' });
    const err = (await loadModel(c.path).catch((e: unknown) => e)) as ModelFileError;
    expect(err.code).toBe('ERR_TENSOR_SHAPE');
    expect(err.message).toMatch(/tensor 'blk\.0\.ffn_up\.weight' has wrong shape: expected \[64, 128\], found \[\d+, \d+\]/);
  });

  it('a vocabulary-only file is not a model', async () => {
    await expect(loadModel(vocab)).rejects.toMatchObject({ code: 'ERR_MISSING_TENSOR', message: expect.stringContaining("'token_embd.weight'") });
  });

  it('the process survives all of them and still loads a good model', async () => {
    const m = await loadModel(await good());
    const s = await m.createSession({ contextSize: 64 });
    const r = await s.generate([1, 100, 200], { maxTokens: 4 }).result();
    expect(r.tokens).toHaveLength(4);
    await m.dispose();
  });
});
