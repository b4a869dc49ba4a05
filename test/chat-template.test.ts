// Chat templates rendered with @huggingface/jinja exactly as transformers' apply_chat_template renders
// them. The expected strings were written down from the reference: jinja2 3.1.6 in transformers'
// environment (sandboxed, trim_blocks, lstrip_blocks, raise_exception), by
// test/utils/chat-template-reference.py. Templates: Qwen2 (ChatML) from the real ggml-vocab-qwen2.gguf,
// and Llama 3, Mistral (v0.1) and Zephyr (block tags on their own lines) from test/fixtures.
import { expect, it, describe } from '@jest/globals';
import * as path from 'path';
import { readGguf, Tokenizer } from '../lib';
import { ggufString } from '../lib/gguf/reader';
import { ChatTemplate, CHATML_TEMPLATE, HttpError, tokenizeChatPrompt, type ChatMessage } from '../lib/server';
import { describeShared } from './utils/shared';
import * as fs from 'fs';

type Fixture = { source: string; template: string; special: { bos_token: string; eos_token: string } };
const templates = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'chat-templates.json'), 'utf8')) as Record<'llama3' | 'mistral' | 'zephyr', Fixture>;

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are a terse assistant.' },
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi. ' },
  { role: 'user', content: ' What is 2+2? ' },
];
const NO_SYSTEM: ChatMessage[] = [
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi.' },
  { role: 'user', content: 'Wie geht es dir? 🙂' },
];

/** A tokenizer stand-in with the special tokens a template sees (the templates read only their text). */
function fakeTokenizer(special: { bos_token: string; eos_token: string }): Tokenizer {
  const texts = ['<unk>', special.bos_token, special.eos_token];
  return { nVocab: 3, bos: 1, eos: 2, unk: 0, pad: -1, tokenText: (id: number) => texts[id] } as unknown as Tokenizer;
}

function template(name: keyof typeof templates): ChatTemplate {
  const t = templates[name];
  return new ChatTemplate({ template: t.template, origin: 'option' }, fakeTokenizer(t.special));
}

describe('chat templates (fixtures)', () => {
  it('Llama 3: bos_token first, contents trimmed, the assistant header as generation prompt', () => {
    const t = template('llama3');
    expect(t.render(CONVERSATION, true)).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a terse assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(t.render(CONVERSATION, false)).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a terse assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>',
    );
    expect(t.render(NO_SYSTEM, true)).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWie geht es dir? 🙂<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });

  it('Mistral: [INST] pairs, eos after each answer; a system message raises the template\'s exception, a 400', () => {
    const t = template('mistral');
    expect(t.render(NO_SYSTEM, true)).toBe('<s>[INST] Hello! [/INST]Hi.</s>[INST] Wie geht es dir? 🙂 [/INST]');
    let err: unknown;
    try {
      t.render(CONVERSATION, true);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({ status: 400, param: 'messages' });
    expect((err as Error).message).toMatch(/Conversation roles must alternate user\/assistant\/user\/assistant\/\.\.\./);
  });

  it('Zephyr: trim_blocks and lstrip_blocks on a template written one tag per line', () => {
    const t = template('zephyr');
    expect(t.render(CONVERSATION, true)).toBe(
      '<|system|>\nYou are a terse assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi. </s>\n<|user|>\n What is 2+2? </s>\n<|assistant|>\n',
    );
    expect(t.render(NO_SYSTEM, false)).toBe('<|user|>\nHello!</s>\n<|assistant|>\nHi.</s>\n<|user|>\nWie geht es dir? 🙂</s>\n');
  });

  it('the ChatML fallback', () => {
    const t = new ChatTemplate({ template: CHATML_TEMPLATE, origin: 'fallback' }, fakeTokenizer({ bos_token: '<s>', eos_token: '</s>' }));
    expect(t.render(NO_SYSTEM.slice(0, 1), true)).toBe('<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n');
  });
});

describeShared('chat templates (from GGUF files)', (dir) => {
  it('Qwen2 (ChatML) from ggml-vocab-qwen2.gguf: the default system message, then <|im_start|> turns; special tokens parsed', async () => {
    const file = await readGguf(path.join(dir, 'models', 'vocab', 'ggml-vocab-qwen2.gguf'));
    const tokenizer = Tokenizer.fromGguf(file);
    const t = new ChatTemplate({ template: ggufString(file, 'tokenizer.chat_template')!, origin: 'gguf' }, tokenizer);
    expect(t.render(CONVERSATION, true)).toBe(
      '<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi. <|im_end|>\n<|im_start|>user\n What is 2+2? <|im_end|>\n<|im_start|>assistant\n',
    );
    const text = t.render(NO_SYSTEM, true);
    expect(text).toBe(
      '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nWie geht es dir? 🙂<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(t.render(NO_SYSTEM, false)).toBe(
      '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nWie geht es dir? 🙂<|im_end|>\n',
    );
    const ids = tokenizeChatPrompt(tokenizer, text);
    const imStart = tokenizer.textToToken('<|im_start|>')!;
    expect(ids[0]).toBe(imStart);  // Qwen2 adds no BOS
    expect(ids.filter((id) => id === imStart)).toHaveLength(5);
    expect(tokenizer.detokenize(ids, { unparseSpecial: true })).toBe(text);
  });

  it('BOS once: a template that writes bos_token does not get a second one', async () => {
    const file = await readGguf(path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf'));
    const tokenizer = Tokenizer.fromGguf(file);
    expect(tokenizer.addBos).toBe(true);
    const t = new ChatTemplate({ template: templates.mistral.template, origin: 'option' }, tokenizer);
    expect(t.specialTokens.bos_token).toBe('<s>');
    const text = t.render(NO_SYSTEM.slice(0, 1), true);
    expect(text).toBe('<s>[INST] Hello! [/INST]');
    const ids = tokenizeChatPrompt(tokenizer, text);
    expect(ids.filter((id) => id === tokenizer.bos)).toHaveLength(1);
    expect(ids[0]).toBe(tokenizer.bos);
    // and one is added when the template writes none
    const plain = tokenizeChatPrompt(tokenizer, '[INST] Hello! [/INST]');
    expect(plain).toEqual(ids);
  });
});
