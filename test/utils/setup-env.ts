// Jest set-up (jest.config.js setupFiles): the CLI processes the tests start keep their 'auto' cache
// (lib/cli/index.ts) in a temporary folder of this test run, never in the user's ~/.cache.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

if (!process.env.SPECDEC_CACHE_DIR) {
  process.env.SPECDEC_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-test-cache-'));
}
