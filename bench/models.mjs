// The benchmark models: the shared code pair, and the code target re-quantized to the other weight
// types specdec's kernels run (test/utils/requantize.ts, compiled once into bench/tmp/ts; files in
// bench/tmp/models). Same network in every type, so the types compare kernels, not models.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..');
export const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
export const codeTargetQ8 = path.join(shared, 'models', 'code', 'code-target-q8_0.gguf');
export const codeDraft = path.join(shared, 'models', 'code', 'code-draft-f16.gguf');
export const TYPE_LABEL = { q8_0: 'Q8_0', q4_k_m: 'Q4_K_M', q4_0: 'Q4_0', f16: 'F16', bf16: 'BF16' };

/** The code target in weight type `type` (the shared file for q8_0), written on first use. */
export function codeTarget(type) {
  if (type === 'q8_0') return codeTargetQ8;
  if (!TYPE_LABEL[type]) throw new Error(`unknown weight type ${type} (one of ${Object.keys(TYPE_LABEL).join(', ')})`);
  const file = path.join(root, 'bench', 'tmp', 'models', `code-target-${type}.gguf`);
  if (existsSync(file)) return file;
  if (!existsSync(codeTargetQ8)) throw new Error(`the code target is missing in ${shared}/models/code`);
  const outDir = path.join(root, 'bench', 'tmp', 'ts');
  if (!existsSync(path.join(outDir, 'requantize.js'))) {
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const p = spawnSync(process.execPath, [tsc, '--outDir', outDir, '--module', 'commonjs', '--target', 'ES2022', '--esModuleInterop',
      '--skipLibCheck', '--types', 'node', path.join(root, 'test', 'utils', 'requantize.ts')], { encoding: 'utf8' });
    if (p.status !== 0) throw new Error(`compiling test/utils/requantize.ts failed:\n${p.stdout}${p.stderr}`);
  }
  const script = `require(${JSON.stringify(path.join(outDir, 'requantize.js'))}).requantize(${JSON.stringify(codeTargetQ8)}, ${JSON.stringify(file)}, ${JSON.stringify(type)}).catch((e) => { console.error(e); process.exit(1); })`;
  process.stderr.write(`writing ${path.relative(root, file)}\n`);
  const p = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'] });
  if (p.status !== 0) throw new Error(`re-quantizing the code target to ${type} failed`);
  return file;
}
