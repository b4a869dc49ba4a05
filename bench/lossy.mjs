#!/usr/bin/env node
// npm run bench:lossy — the speed-vs-fidelity frontier of the lossy methods, charted from the results
// that bench:ead (bench/results/ead-heldout.json) and bench:lud (bench/results/lud.json) wrote: speed
// over our autoregressive decoding against the rise of the target's NLL per token of the output
// (greedy, code target), with the lossless methods measured in the same runs at zero rise. It runs
// nothing itself; the two benchmarks ran on different days and prompt sets (each file says which), so
// compare points within a method, and the methods only by where their frontiers lie.
// Writes bench/results/lossy.svg and lossy.md.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { lineChart } from './chart.mjs';
import { root } from './models.mjs';

const read = (f) => JSON.parse(readFileSync(path.join(root, 'bench', 'results', f), 'utf8'));
const ead = read('ead-heldout.json');
const lud = read('lud.json');

const eadRows = ead.rows.map((r) => ({ source: 'ead-heldout.json', name: r.name, lossless: r.method !== 'ead', speedup: r.speedup, nllRise: r.nllRise, identical: r.identical }));
const ludBase = lud.rows.find((r) => r.method === 'autoregressive').nllPerToken;
const ludRows = lud.rows.map((r) => ({ source: 'lud.json', name: r.name, lossless: r.lossless, speedup: r.speedup, nllRise: r.nllPerToken / ludBase - 1, identical: r.identicalOutputs }));

const frontier = (rows) => rows.filter((r) => !r.lossless).sort((a, b) => a.speedup - b.speedup).map((r) => [r.speedup, 100 * Math.max(0, r.nllRise)]);
const series = [
  { name: 'EAD (threshold sweep)', points: frontier(eadRows) },
  { name: 'LUD lossy (α, k)', points: frontier(ludRows) },
  { name: 'lossless (draft, lud verify, AR)', points: [...eadRows, ...ludRows].filter((r) => r.lossless).map((r) => [r.speedup, 0]).sort((a, b) => a[0] - b[0]) },
];
writeFileSync(path.join(root, 'bench', 'results', 'lossy.svg'), lineChart({
  title: 'Lossy methods, code target, greedy: speed vs fidelity', xLabel: 'speed over our autoregressive decoding (log scale)',
  yLabel: 'target NLL rise per token, %', series,
}));
let md = '| method | source | speed over our autoregressive | target NLL per token, rise | outputs identical to the target\'s |\n|---|---|---|---|---|\n';
for (const r of [...eadRows, ...ludRows]) {
  md += `| ${r.name}${r.lossless && !r.name.includes('lossless') ? ' (lossless)' : ''} | ${r.source} | ${r.speedup.toFixed(2)}× | ${r.nllRise >= 0 ? '+' : ''}${(100 * r.nllRise).toFixed(1)} % | ${(100 * r.identical).toFixed(0)} % |\n`;
}
md += `\nEAD: ${ead.rows.length} configurations, ${ead.set} prompts, ${ead.tokens} tokens, ${ead.reps} runs, ${ead.threads} thread, ${ead.date.slice(0, 10)}. LUD: ${lud.prompts} prompts, ${lud.tokens} tokens, ${lud.reps} runs, ${lud.threads} thread, ${lud.machine.date.slice(0, 10)}. Chart: [bench/results/lossy.svg](bench/results/lossy.svg).\n`;
writeFileSync(path.join(root, 'bench', 'results', 'lossy.md'), md);
process.stdout.write(md);
