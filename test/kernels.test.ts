// specdec's CPU kernels (native/kernels): every weight type (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16)
// on every instruction-set path this machine supports, against the scalar reference, bit for bit;
// batch invariance inside the kernel; and, as a check of the tile layouts independent of ours, the
// exact dot product of ggml's own dequantization of the weights (it differs only by float
// rounding). F16 and BF16 use the activations rounded to their type, as ggml does.
import { describe, expect, it } from '@jest/globals';
import { binding } from '../lib/binding';

const b = binding();
const isas = b._kernelIsas();

// rows: below, at and above a 16-row tile; k: odd numbers of 32-value blocks for Q8_0, Q4_0, F16
// and BF16, of 256-value super-blocks for the K-quants
const SHAPES: Record<string, [number, number][]> = {
  q8_0: [[1, 32], [15, 96], [16, 512], [17, 32], [100, 96], [33, 512]],
  q4_0: [[1, 32], [15, 96], [16, 512], [17, 32], [100, 96], [33, 512]],
  q4_k: [[1, 256], [15, 768], [16, 512], [17, 256], [100, 256]],
  q6_k: [[1, 256], [15, 768], [16, 512], [17, 256], [100, 256]],
  f16: [[1, 32], [15, 96], [16, 512], [17, 32], [100, 96], [33, 512]],
  bf16: [[1, 32], [15, 96], [16, 512], [17, 32], [100, 96], [33, 512]],
};

describe('quantized matrix kernels', () => {
  it('the generic path and, on x86-64, the AVX2 path are always built', () => {
    expect(isas[0]).toBe('generic');
    if (process.arch === 'x64') expect(isas).toContain('avx2');
  });

  for (const [type, shapes] of Object.entries(SHAPES)) {
    for (const isa of isas) {
      it(`${type} on ${isa}: bit-exact against the reference for every batch size 1..64 and odd sizes`, () => {
        let seed = 1;
        for (const [rows, k] of shapes) {
          for (let n = 1; n <= 64; n++) {
            const r = b._kernelCheck(isa, rows, k, n, seed++, 1 + (n % 3), type);
            if (r.mismatches !== 0 || r.invariantMismatches !== 0) {
              throw new Error(`${type} ${isa} rows=${rows} k=${k} n=${n}: ${JSON.stringify(r)}`);
            }
            expect(r.maxRelDiffDequant).toBeLessThan(2e-6);
          }
        }
      });
    }
  }

  for (const type of Object.keys(SHAPES)) {
    it(`${type}: a wide product (4096 x 1536, 40 columns, 2 thread shares) is exact on the best path`, () => {
      const r = b._kernelCheck(isas[isas.length - 1], 4096, 1536, 40, 99, 2, type);
      expect(r).toEqual({ mismatches: 0, invariantMismatches: 0, maxRelDiffDequant: expect.any(Number) });
      expect(r.maxRelDiffDequant).toBeLessThan(2e-6);
    });
  }

  it('rejects an unknown instruction set or weight type with a typed message', () => {
    expect(() => b._kernelCheck('sse9', 16, 32, 1, 1, 1)).toThrow(/ERR_INVALID_OPTION/);
    expect(() => b._kernelCheck('generic', 16, 32, 1, 1, 1, 'q5_k')).toThrow(/ERR_INVALID_OPTION.*q5_k/);
    expect(() => b._kernelCheck('generic', 16, 32, 1, 1, 1, 'q4_k')).toThrow(/ERR_INVALID_OPTION/);
  });
});
