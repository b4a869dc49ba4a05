/**
 * `specdec info`: what a GGUF file holds, read from its header only (no weights loaded). A summary
 * comes first (architecture, parameters, weight types by name, context, tokenizer, chat template), then
 * every metadata key. With --json, one object: the summary, `tensorTypes` by type name, `metadata`.
 */
import type { GgufFile, GgufValue } from '../gguf/reader';
import { ggmlTypeName } from '../gguf/types';

export interface InfoSummary {
  architecture: string | null;
  name: string | null;
  /** Total elements of every tensor. */
  parameters: number;
  /** Per weight type: tensors and their elements, the most elements first. */
  weightTypes: Array<{ type: string; tensors: number; parameters: number }>;
  contextLength: number | null;
  embeddingLength: number | null;
  layers: number | null;
  tokenizer: { model: string | null; preTokenizer: string | null; vocabSize: number | null } | null;
  chatTemplate: boolean;
}

function str(v: GgufValue | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

function int(v: GgufValue | undefined): number | null {
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null;
}

export function infoSummary(file: GgufFile): InfoSummary {
  const m = file.metadata;
  const arch = str(m.get('general.architecture'));
  const byType = new Map<string, { tensors: number; parameters: number }>();
  let parameters = 0;
  for (const t of file.tensors) {
    const n = t.dims.reduce((a, d) => a * d, 1);
    parameters += n;
    const name = ggmlTypeName(t.type);
    const e = byType.get(name) ?? { tensors: 0, parameters: 0 };
    e.tensors++;
    e.parameters += n;
    byType.set(name, e);
  }
  const tokens = m.get('tokenizer.ggml.tokens');
  const model = str(m.get('tokenizer.ggml.model'));
  return {
    architecture: arch,
    name: str(m.get('general.name')),
    parameters,
    weightTypes: [...byType].map(([type, e]) => ({ type, ...e })).sort((a, b) => b.parameters - a.parameters),
    contextLength: arch ? int(m.get(`${arch}.context_length`)) : null,
    embeddingLength: arch ? int(m.get(`${arch}.embedding_length`)) : null,
    layers: arch ? int(m.get(`${arch}.block_count`)) : null,
    tokenizer: model === null && tokens === undefined ? null : {
      model,
      preTokenizer: str(m.get('tokenizer.ggml.pre')),
      vocabSize: Array.isArray(tokens) ? tokens.length : null,
    },
    chatTemplate: typeof m.get('tokenizer.chat_template') === 'string',
  };
}

function count(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

const TOKENIZER_KIND: Record<string, string> = { llama: 'SentencePiece', gpt2: 'byte-level BPE' };

/** The summary as the lines `specdec info` prints first. */
export function infoSummaryText(path: string, file: GgufFile, s: InfoSummary): string {
  const rows: Array<[string, string]> = [
    ['architecture', `${s.architecture ?? '(none)'}${s.name ? ` (${s.name})` : ''}`],
    ['parameters', `${count(s.parameters)} (${s.parameters})${s.layers !== null ? `, ${s.layers} layers` : ''}${s.embeddingLength !== null ? `, embedding ${s.embeddingLength}` : ''}`],
    ['weight types', s.weightTypes.map((w) => `${w.type} (${w.tensors} tensor${w.tensors === 1 ? '' : 's'}, ${count(w.parameters)})`).join(', ') || '(no tensors)'],
    ['context', s.contextLength !== null ? `${s.contextLength} tokens (training)` : '(not given)'],
    ['tokenizer', s.tokenizer
      ? `${s.tokenizer.model ?? '?'}${s.tokenizer.model && TOKENIZER_KIND[s.tokenizer.model] ? ` (${TOKENIZER_KIND[s.tokenizer.model]})` : ''}, ` +
        `${s.tokenizer.vocabSize ?? '?'} tokens${s.tokenizer.preTokenizer ? `, pre-tokenizer ${s.tokenizer.preTokenizer}` : ''}`
      : '(none)'],
    ['chat template', s.chatTemplate ? 'yes (tokenizer.chat_template)' : 'none'],
    ['file', `GGUF v${file.version}, ${file.fileSize} bytes, ${file.tensors.length} tensors`],
  ];
  return `${path}\n${rows.map(([k, v]) => `  ${k.padEnd(14)}${v}\n`).join('')}`;
}
