#!/usr/bin/env node
// Lists the addon's C++ sources (native/**/*.cpp) for binding.gyp, as CMakeLists.txt globs them.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const out = [];
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.cpp')) out.push(path.relative(root, p).split(path.sep).join('/'));
  }
})(path.join(root, 'native'));
process.stdout.write(out.sort().join(' '));
