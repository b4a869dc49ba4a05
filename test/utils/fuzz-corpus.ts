// The GGUF loader's fuzz seed corpus (tools/fuzz/make-corpus.ts: tiny models of every architecture, corrupt
// variants, out-of-range hyper-parameters), written once per test file into a temporary folder: tests read
// its tiny models without binary fixtures in the repository.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeLoadCorpus } from '../../tools/fuzz/make-corpus';

let written: Promise<{ dir: string; files: string[] }> | undefined;

/** The corpus folder and its files (sorted); the folder is removed when the process exits. */
export function loadCorpus(): Promise<{ dir: string; files: string[] }> {
  if (!written) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-fuzz-load-'));
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    written = writeLoadCorpus(dir).then((files) => ({ dir, files }));
  }
  return written;
}
