/**
 * BPE pre-tokenizers as llama.cpp (llama-vocab.cpp, node-llama-cpp 3.21.1 / llama.cpp 0.4.0) selects them
 * from `tokenizer.ggml.pre`: the split regexes and the per-pre-tokenizer flag overrides.
 *
 * The regex strings must stay byte-identical to llama.cpp's: the ones llama.cpp implements with custom code
 * (gpt2, llama3, qwen2, qwen35, newlines) are recognised by their exact text (see unicode.ts).
 */

export interface PreTokenizerConfig {
  /** llama.cpp's pre-tokenizer type (our name) */
  type: string;
  regexes: readonly string[];
  /** overrides applied on top of the BPE defaults (clean_spaces = true, ignore_merges = false, add_bos = false) */
  cleanSpaces?: boolean;
  ignoreMerges?: boolean;
  addBos?: boolean;
  bosNull?: boolean;
}

const GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3_RE = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_RE = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35_RE = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const REGEXES: Record<string, readonly string[]> = {
  default: [
    '[\\p{P}\\$\\+<=>\\^~\\|]+',
    GPT2_RE,
    '\\p{N}+',
    '[0-9][0-9][0-9]',
  ],
  llama3: [LLAMA3_RE],
  dbrx: [LLAMA3_RE],
  chatglm4: [LLAMA3_RE],
  falcon: [
    '[\\p{P}\\$\\+<=>\\^~\\|`]+',
    GPT2_RE,
    '[0-9][0-9][0-9]',
  ],
  starcoder: ['\\p{N}', GPT2_RE],
  gpt2: [GPT2_RE],
  qwen2: [QWEN2_RE],
  qwen35: [QWEN35_RE],
  poro: [' ?[^(\\s|.,!?…。，、।۔،)]+'],
  viking: [' ?[^(\\s|.,!?…。，、।۔،)]+', '\\p{N}'],
  deepseek_coder: ['[\r\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', '[一-龥ࠀ-一가-퟿]+', '\\p{N}'],
  seed_coder: ["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  bailingmoe: ["'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"],
  minicpm5: ['\\p{N}{1,3}', "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  laguna: ['[^\\n]+|[\\n]+', QWEN2_RE],
};

function cfg(type: string, extra: Omit<PreTokenizerConfig, 'type' | 'regexes'> = {}): PreTokenizerConfig {
  return { type, regexes: REGEXES[type], ...extra };
}

const NOCLEAN = { cleanSpaces: false };

/** `tokenizer.ggml.pre` value -> configuration. Missing/empty pre means 'default'. */
export const PRE_TOKENIZERS: Record<string, PreTokenizerConfig> = {
  default: cfg('default'),
  minicpm5: cfg('minicpm5', { ignoreMerges: true }),
  llama3: cfg('llama3', { ignoreMerges: true, addBos: true }),
  'llama-v3': cfg('llama3', { ignoreMerges: true, addBos: true }),
  'llama-bpe': cfg('llama3', { ignoreMerges: true, addBos: true }),
  falcon3: cfg('llama3', { ignoreMerges: true, addBos: true }),
  'falcon-h1': cfg('llama3', { ignoreMerges: true, addBos: true }),
  pixtral: cfg('llama3', { ignoreMerges: true, addBos: true }),
  'midm-2.0': cfg('llama3', { ignoreMerges: true, addBos: true }),
  lfm2: cfg('llama3', { ignoreMerges: true, addBos: true }),
  'jina-v5-nano': cfg('llama3', { ignoreMerges: true, addBos: true }),
  'deepseek-coder': cfg('deepseek_coder', NOCLEAN),
  falcon: cfg('falcon'),
  mpt: cfg('gpt2'),
  starcoder: cfg('starcoder'),
  'gpt-2': cfg('gpt2'),
  'phi-2': cfg('gpt2'),
  'jina-es': cfg('gpt2'),
  'jina-de': cfg('gpt2'),
  gigachat: cfg('gpt2'),
  'jina-v2-es': cfg('gpt2'),
  'jina-v2-de': cfg('gpt2'),
  'a.x-4.0': cfg('gpt2'),
  mellum: cfg('gpt2'),
  'modern-bert': cfg('gpt2'),
  'jina-v1-en': cfg('gpt2'),
  'jina-v2-code': cfg('gpt2'),
  'roberta-bpe': cfg('gpt2'),
  refact: cfg('starcoder'),
  'command-r': cfg('starcoder', NOCLEAN),
  qwen2: cfg('qwen2', NOCLEAN),
  'deepseek-r1-qwen': cfg('qwen2', NOCLEAN),
  kormo: cfg('qwen2', NOCLEAN),
  f2llmv2: cfg('qwen2', NOCLEAN),
  qwen35: cfg('qwen35', NOCLEAN),
  stablelm2: cfg('qwen2'),
  olmo: cfg('gpt2'),
  dbrx: cfg('dbrx'),
  'smaug-bpe': cfg('dbrx'),
  'poro-chat': cfg('poro', NOCLEAN),
  glm4: cfg('chatglm4', { bosNull: true }),
  'chatglm-bpe': cfg('chatglm4', { bosNull: true }),
  viking: cfg('viking', NOCLEAN),
  jais: cfg('gpt2'),
  smollm: cfg('starcoder', NOCLEAN),
  codeshell: cfg('starcoder'),
  bloom: cfg('poro'),
  'gpt3-finnish': cfg('poro'),
  exaone: cfg('starcoder'),
  exaone4: cfg('gpt2'),
  'minerva-7b': cfg('starcoder'),
  megrez: cfg('qwen2'),
  trillion: cfg('gpt2', NOCLEAN),
  'granite-docling': cfg('gpt2', NOCLEAN),
  bailingmoe: cfg('bailingmoe', NOCLEAN),
  bailingmoe2: cfg('bailingmoe', NOCLEAN),
  'llada-moe': cfg('bailingmoe', NOCLEAN),
  'seed-coder': cfg('seed_coder', NOCLEAN),
  hunyuan: cfg('qwen2', NOCLEAN),
  'grok-2': cfg('qwen2', NOCLEAN),
  laguna: cfg('laguna', NOCLEAN),
  'solar-open': cfg('qwen2', NOCLEAN),
  mellum2: cfg('starcoder'),
};
