// Locates the shared assets folder (models, vocabularies, references): $SPECDEC_SHARED, else ../shared
// next to the repository. When it is missing, tests that need it fail loudly on CI (process.env.CI) and
// are skipped with a loud warning elsewhere.
import * as fs from 'fs';
import * as path from 'path';
import { describe, it } from '@jest/globals';

let warned = false;

/** The shared assets folder, or null when absent (outside CI). Throws on CI when absent. */
export function sharedDir(): string | null {
  const dir = process.env.SPECDEC_SHARED
    ? path.resolve(process.env.SPECDEC_SHARED)
    : path.resolve(__dirname, '..', '..', '..', 'shared');
  if (fs.existsSync(path.join(dir, 'models'))) return dir;
  const msg = `shared assets folder not found at ${dir} (set SPECDEC_SHARED to the folder that holds models/ and eval/)`;
  if (process.env.CI) throw new Error(`${msg}; required on CI`);
  if (!warned) {
    warned = true;
    // eslint-disable-next-line no-console
    console.warn(`\n${'!'.repeat(100)}\n!!! WARNING: ${msg}.\n!!! SKIPPING every test that needs the shared models.\n${'!'.repeat(100)}\n`);
  }
  return null;
}

/** `describe` when the shared folder exists, else `describe.skip` (and a loud warning). */
export function describeShared(name: string, fn: (dir: string) => void): void {
  const dir = sharedDir();
  if (dir) describe(name, () => fn(dir));
  else describe.skip(`${name} (shared assets missing)`, () => { it('skipped', () => undefined); });
}

/**
 * What to do with a test that needs asset files (beyond the shared folder itself): 'run' when they
 * exist; when one is missing, 'fail' on CI (process.env.CI), as for the shared folder, else 'skip'.
 */
export function assetGate(files: string[], ci: boolean = !!process.env.CI): { action: 'run' | 'skip' | 'fail'; missing: string[] } {
  const missing = files.filter((f) => !fs.existsSync(f));
  return { action: missing.length === 0 ? 'run' : ci ? 'fail' : 'skip', missing };
}

/**
 * `it` for a test that needs these files: it runs when they exist; when one is missing the test
 * fails on CI, and is skipped with a loud warning elsewhere. Use instead of `existsSync(f) ? it : it.skip`.
 */
type TestDef = (name: string, fn: () => unknown, timeout?: number) => void;

export function itWith(...files: string[]): TestDef {
  const { action, missing } = assetGate(files);
  if (action === 'run') return it as TestDef;
  const msg = `missing test asset${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`;
  if (action === 'fail') {
    return (name: string) => it(name, () => { throw new Error(`${msg}; required on CI`); });
  }
  // eslint-disable-next-line no-console
  console.warn(`!!! WARNING: ${msg}: SKIPPING the tests that need it`);
  return it.skip as TestDef;
}
