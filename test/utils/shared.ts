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
