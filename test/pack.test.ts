// The installable package (scripts/pack-check.sh): npm pack, then npm install of the tarball in an
// empty folder whose PATH has node, npm and sh only (no compiler, no cmake), then require('specdec'),
// import 'specdec' and the specdec CLI there, on the prebuilt binary the tarball carries and the
// embedded model (no --model). On CI the prebuilt binary is the addon `npm install` built here
// (build/Release/specdec.node) copied into prebuilds/linux-x64/ of a staging copy of the package, so
// that the test takes about a minute; the portable prebuildify build (node-gyp, compiles ggml) is
// `npm run pack-check` without --binary, outside CI.
import { expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { sharedDir } from './utils/shared';

const run = promisify(execFile);
const root = path.join(__dirname, '..');

it('npm pack, then install in an empty folder with no compiler: require, import and the CLI run on the prebuilt binary and the embedded model', async () => {
  const binary = path.join(root, 'build', 'Release', 'specdec.node');
  expect(fs.existsSync(binary)).toBe(true);
  const shared = sharedDir();
  const env: NodeJS.ProcessEnv = { ...process.env, SPECDEC_SHARED: shared ?? '' };
  delete env.SPECDEC_BINDING;  // the installed package must find its own prebuilt binary
  const { stdout } = await run('bash', [path.join(root, 'scripts', 'pack-check.sh'), '--binary', binary], { cwd: root, env, maxBuffer: 16 << 20 });
  expect(stdout).toMatch(/pack-check: npm install specdec-[\d.]+\.tgz in an empty folder, PATH=.* \(no compiler\)/);
  expect(stdout).toMatch(/pack-check: require, import and the CLI give the same 16 greedy tokens; --version \d+\.\d+\.\d+/);
  if (shared) expect(stdout).toMatch(/the greedy tokens equal node-llama-cpp's reference/);
  expect(stdout).toMatch(/stderr: specdec: no --model given: using the embedded model .*node_modules\/specdec\/assets\/stories260K\.gguf/);
  expect(stdout.trim().split('\n').pop()).toBe('pack-check: ok');
}, 600000);

it('Electron: both builds define NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED, and no native source makes a buffer over external memory', () => {
  // with the define, node-addon-api has no Napi::Buffer::New(env, data, length[, finalizer]) nor the
  // external ArrayBuffer::New: a use would not compile. This keeps the define from being dropped.
  expect(fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8')).toMatch(/target_compile_definitions\(\$\{PROJECT_NAME\}[^)]*NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED/);
  expect(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8')).toMatch(/"defines": \[[^\]]*"NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED"/);
  const offenders: string[] = [];
  (function walk(d: string) {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(cpp|h)$/.test(e.name) && /napi_create_external_(array)?buffer|Buffer<[^>]*>::New\(\s*\w+\s*,[^,)]+,|ArrayBuffer::New\(\s*\w+\s*,[^,)]+,/.test(fs.readFileSync(p, 'utf8'))) offenders.push(p);
    }
  })(path.join(root, 'native'));
  expect(offenders).toEqual([]);
});
