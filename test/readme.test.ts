// The README's "Use" example runs as written: its code block is taken from README.md and run against
// the shared code pair, with only the model paths substituted (and the package's import served by
// the source tree).
import { expect } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import * as lib from '../lib';
import { describeShared, itWith } from './utils/shared';

describeShared('README', (dir) => {
  const target = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const draft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');

  itWith(target, draft)('the "Use" example runs as written against the shared code pair', async () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    const block = /^## Use\n\n```ts\n([\s\S]*?)^```$/m.exec(readme);
    expect(block).not.toBeNull();
    let code = block![1];
    for (const [name, file] of [['code-target-q8_0.gguf', target], ['code-draft-f16.gguf', draft]]) {
      expect(code).toContain(`'${name}'`);
      code = code.split(`'${name}'`).join(JSON.stringify(file));
    }
    const imp = /^import \{ ([^}]+) \} from 'specdec';.*$/m.exec(code);
    expect(imp).not.toBeNull();
    code = code.replace(imp![0], '');
    const names = imp![1].split(',').map((n) => n.trim());
    const exports = lib as unknown as Record<string, unknown>;
    for (const n of names) expect(typeof exports[n]).toBe('function');
    const written: string[] = [];
    const proc = { stdout: { write: (t: string) => { written.push(t); return true; } } };
    const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
    await new AsyncFunction(...names, 'process', code)(...names.map((n) => exports[n]), proc);
    expect(written.join('').length).toBeGreaterThan(0);
  });
});
