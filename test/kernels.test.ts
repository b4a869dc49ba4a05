// specdec's CPU kernels (native/kernels): every instruction-set path this machine supports,
// against the scalar reference, bit for bit; batch invariance inside the kernel; and ggml's own
// Q8_0 dot product as a sanity bound (it differs only in the order of the float sums).
import { describe, expect, it } from '@jest/globals';
import { binding } from '../lib/binding';

const b = binding();
const isas = b._kernelIsas();

describe('Q8_0 kernels', () => {
  it('the generic path and, on x86-64, the AVX2 path are always built', () => {
    expect(isas[0]).toBe('generic');
    if (process.arch === 'x64') expect(isas).toContain('avx2');
  });

  for (const isa of isas) {
    it(`${isa}: bit-exact against the reference for every batch size 1..64 and odd sizes`, () => {
      let seed = 1;
      // rows: below, at and above a 16-row tile; k: 1, 3 and 16 blocks of 32
      for (const [rows, k] of [[1, 32], [15, 96], [16, 512], [17, 32], [100, 96], [33, 512]]) {
        for (let n = 1; n <= 64; n++) {
          const r = b._kernelCheck(isa, rows, k, n, seed++, 1 + (n % 3));
          if (r.mismatches !== 0 || r.invariantMismatches !== 0) {
            throw new Error(`${isa} rows=${rows} k=${k} n=${n}: ${JSON.stringify(r)}`);
          }
          expect(r.maxRelDiffGgml).toBeLessThan(1e-6);
        }
      }
    });
  }

  it('a wide product (4096 x 1536, 40 columns, 2 thread shares) is exact on the best path', () => {
    const r = b._kernelCheck(isas[isas.length - 1], 4096, 1536, 40, 99, 2);
    expect(r).toEqual({ mismatches: 0, invariantMismatches: 0, maxRelDiffGgml: expect.any(Number) });
    expect(r.maxRelDiffGgml).toBeLessThan(1e-6);
  });

  it('rejects an unknown instruction set with a typed message', () => {
    expect(() => b._kernelCheck('sse9', 16, 32, 1, 1, 1)).toThrow(/ERR_INVALID_OPTION/);
  });
});
