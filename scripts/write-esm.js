// Writes dist/index.mjs: the ES module entry re-exports the CommonJS build, so
// `import { loadModel } from 'specdec'` and `require('specdec')` load the same objects.
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist');
const cjs = require(path.join(dist, 'index.js'));
const names = Object.keys(cjs).filter((n) => n !== 'default' && n !== '__esModule');
const body = `import cjs from './index.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`;
fs.writeFileSync(path.join(dist, 'index.mjs'), body);
fs.writeFileSync(path.join(dist, 'index.d.mts'), "export * from './index.js';\n");
