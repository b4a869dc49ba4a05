// Rules the test suite keeps: a test that needs an asset fails on CI when it is missing (it is skipped,
// loudly, only elsewhere), as the shared folder does (test/utils/shared.ts).
import { describe, expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { assetGate } from './utils/shared';

describe('test suite hygiene', () => {
  it('a missing asset fails the test on CI and skips it elsewhere; present assets run', () => {
    const missing = path.join(__dirname, 'no-such-asset.gguf');
    expect(assetGate([__filename, missing], true)).toEqual({ action: 'fail', missing: [missing] });
    expect(assetGate([__filename, missing], false)).toEqual({ action: 'skip', missing: [missing] });
    expect(assetGate([__filename], true)).toEqual({ action: 'run', missing: [] });
  });

  it('no test file skips on a missing asset by itself (itWith() from test/utils/shared.ts fails on CI instead)', () => {
    const offenders: string[] = [];
    for (const f of fs.readdirSync(__dirname).filter((n) => n.endsWith('.test.ts'))) {
      const text = fs.readFileSync(path.join(__dirname, f), 'utf8');
      text.split('\n').forEach((line, i) => {
        if (/\bit\.skip\b|\bdescribe\.skip\b|\btest\.skip\b|\bxit\(/.test(line)) offenders.push(`${f}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offenders).toEqual([]);
  });
});
