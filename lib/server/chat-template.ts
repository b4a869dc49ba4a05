/**
 * Chat templates: the GGUF's `tokenizer.chat_template` (a Jinja template, as transformers keeps it in
 * tokenizer_config.json) rendered with @huggingface/jinja, the engine node-llama-cpp and transformers.js
 * use, with transformers' `apply_chat_template` inputs: `messages`, `add_generation_prompt`, the special
 * tokens as text (`bos_token`, `eos_token`, `unk_token`, `pad_token`) and `raise_exception`, which the
 * engine provides. @huggingface/jinja parses with trim_blocks and lstrip_blocks, as transformers does.
 *
 * A model without a template gets the fallback, ChatML (as llama-server falls back), or with
 * `chatTemplate: false` a request for /v1/chat/completions is refused (400).
 */
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from '../tokenizer';
import { HttpError } from './http-error';

/** One message as the OpenAI chat API sends it (text content only). */
export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
}

/** The fallback for models without a template: ChatML, written here (the format, not a copied template). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface ChatTemplateSource {
  /** The template text. */
  template: string;
  /** Where it came from: 'gguf' (tokenizer.chat_template), 'option' (given to createServer), 'fallback' (ChatML). */
  origin: 'gguf' | 'option' | 'fallback';
}

export class ChatTemplate {
  private readonly compiled: Template;
  private readonly special: Record<string, string>;

  /** Parses the template: one that does not parse throws here (the server then answers chat requests with the reason). */
  constructor(readonly source: ChatTemplateSource, tokenizer: Tokenizer) {
    this.compiled = new Template(source.template);
    const text = (id: number) => (id >= 0 && id < tokenizer.nVocab ? tokenizer.tokenText(id) : '');
    this.special = {
      bos_token: text(tokenizer.bos),
      eos_token: text(tokenizer.eos),
      unk_token: text(tokenizer.unk),
      pad_token: text(tokenizer.pad),
    };
  }

  /** The special tokens as the template sees them. */
  get specialTokens(): Readonly<Record<string, string>> {
    return this.special;
  }

  /**
   * The prompt text for these messages. A template that calls raise_exception() (roles that do not
   * alternate, a role it does not know), or fails on the messages, is the request's fault: a 400.
   */
  render(messages: ChatMessage[], addGenerationPrompt = true): string {
    try {
      return this.compiled.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.special });
    } catch (err) {
      throw new HttpError(400, `the model's chat template refused the messages: ${(err as Error)?.message ?? String(err)}`, 'messages');
    }
  }
}

/**
 * Tokens of a rendered chat prompt: special tokens written in the text are parsed (as llama-server
 * does for chat prompts), and BOS is added as the model's metadata says, once: a template that writes
 * `bos_token` itself does not get a second one.
 */
export function tokenizeChatPrompt(tokenizer: Tokenizer, text: string): number[] {
  const tokens = tokenizer.tokenize(text, { special: true, addBos: false, addEos: false });
  if (tokenizer.addBos && tokenizer.bos >= 0 && tokens[0] !== tokenizer.bos) tokens.unshift(tokenizer.bos);
  return tokens;
}
