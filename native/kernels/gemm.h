// Matrix products with repacked weights (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16), built for small
// batches (one token, or a verification tree of a few dozen; prompt prefill goes through them too)
// and for batch invariance: every output element is computed by the same arithmetic whatever the
// batch size, the column's place in it or the thread split, so a token's logits are bit-identical
// alone and inside a verification batch.
//
// Activations are quantized with ggml's own quantizers, as ggml's dot products take them: Q8_0
// (32 int8 values x[j] and a scale dx per block) for Q8_0 and Q4_0 weights, Q8_K (one scale per
// 256 values) for the K-quants, so the integer products match ggml's. Arithmetic of one output
// element (row r, column c), on every instruction set:
//   acc = 0
//   for each 32-value block b of the row, in order:
//     Q8_0:  acc = fma(d * dx,  (float) sum_j q[j] x[j],              acc)   q in [-128, 127]
//     Q4_0:  acc = fma(d * dx,  (float) sum_j (q[j] - 8) x[j],        acc)   q in [0, 15]
//     Q4_K:  acc = fma(ds * dx, (float) sum_j q[j] x[j],              acc)   q in [0, 15]
//            acc = fma(-dm * dx, (float) sum_j x[j],                  acc)
//     Q6_K:  for each half h of 16 values:
//            acc = fma(ds_h * dx, (float) sum_j∈h (q[j] - 32) x[j],   acc)   q in [0, 63]
// Integer sums are exact in int32; d is the block's fp16 scale widened, ds = d_super * sc and
// dm = dmin_super * m are the K-quant sub-block scale and min in fp32 as ggml's dequantizers form
// them (exact products). ggml's own dot products keep other partial sums, so results agree with
// ggml's to float rounding, not bit for bit.
//
// The weights are repacked once at load time into tiles of 16 rows. Per 32-value block of a tile,
// 8 groups g of [16 rows x 4 values] as unsigned bytes (Q8_0: q + 128; Q6_K: q), or for the 4-bit
// types 4 such groups of bytes whose low nibbles hold group g and high nibbles group g + 4; the
// scale codes follow each (super-)block (tiles.h).
// One AVX-512 VNNI instruction then multiplies 4 values of 16 rows by 4 broadcast activation
// values; the unsigned offsets (+128, +8, +32) are taken back exactly with the activation
// block's sums.
//
// F16 and BF16 weights: activations are rounded to the weight type first (ggml's vec_dot_type
// for these types), then widened back to fp32. Arithmetic of one output element:
//   acc[0..3] = 0
//   for k in order: acc[k % 4] = fma(w[r][k], x[c][k], acc[k % 4])
//   result = (acc[0] + acc[1]) + (acc[2] + acc[3])
// Four chains, so that one column alone still keeps several multiply-adds in flight. The tiles
// hold the 16 rows' values of each k side by side: [K][16] 16-bit values.
#pragma once

#include "kernels/cpu_features.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace specdec::kernels {

constexpr int64_t QK8_0     = 32;  // values per block (activations and weight tiles)
constexpr int64_t TILE_ROWS = 16;

// The weight types the kernels run (ggml_type values in the comments).
enum class wtype { q8_0, q4_0, q4_k, q6_k, f16, bf16 };
const char * wtype_name(wtype t);

// One quantized block of an activation column.
struct act_block {
    int32_t q4[8];   // the 32 int8 values, 4 to an int32 (byte order of memory)
    float   d;       // scale (ggml's fp16 scale, widened)
    int32_t corr;    // -128 * sum of the 32 values (Q8_0's offset)
    int32_t sum;     // sum of the 32 values
    int32_t sum_lo;  // sum of the first 16
};
static_assert(sizeof(act_block) == 48, "act_block layout");

// Bytes of one tile (16 rows of k values) of a weight type.
int64_t tile_bytes(wtype t, int64_t k);

struct packed_weights {
    wtype   type    = wtype::q8_0;
    int64_t rows    = 0;  // output rows (M)
    int64_t k       = 0;  // input size (K, a multiple of 32)
    int64_t nb      = 0;  // blocks per row (K / 32)
    int64_t n_tiles = 0;  // ceil(rows / 16)
    int64_t tile_bytes = 0;
    isa     kernel  = isa::generic;
    uint8_t * data  = nullptr;  // n_tiles * tile_bytes, 64-byte aligned

    packed_weights() = default;
    packed_weights(const packed_weights &) = delete;
    packed_weights & operator=(const packed_weights &) = delete;
    ~packed_weights();

    size_t bytes() const { return (size_t) (n_tiles * tile_bytes); }
    const uint8_t * tile(int64_t t) const { return data + t * tile_bytes; }
};

// The kernels' type for a ggml_type (a GGML_TYPE_* value); false for types they do not run.
bool wtype_from_ggml(int ggml_type, wtype & out);

// Repacks `rows` rows of ggml blocks of type t (row after row, K values each; K must be a
// multiple of 32, and of 256 for the K-quants). Returns null when memory runs out.
std::unique_ptr<packed_weights> pack_weights(wtype t, const void * rows_data, int64_t rows, int64_t k, isa kernel);

// How the activations of a weight type's products are quantized (or rounded).
enum class act_type { q8_0, q8_k, f16, bf16 };
act_type act_type_for(wtype t);

// Bytes of one prepared activation column of k values: k / 32 act_blocks for the quantized
// types, k floats for F16/BF16.
size_t act_column_bytes(act_type t, int64_t k);

// Prepares one activation column of k floats (a multiple of 32, of 256 for Q8_K) with ggml's
// quantizer of that type (every act_block of a Q8_K block carries its scale), or rounds it to
// fp16 / bf16 with ggml's conversion and widens it back.
void quantize_act(act_type t, const float * x, int64_t k, void * out);

// dst[c * ld + r] = row r of the weights . column c of the activations, for the rows of tiles
// [tile_begin, tile_end) and columns [0, n). act holds n columns prepared by quantize_act with
// act_type_for(w.type), act_column_bytes apart.
void gemm(isa kernel, const packed_weights & w, const void * act, int64_t n, float * dst, int64_t ld,
          int64_t tile_begin, int64_t tile_end);

// The definition above in plain scalar C++ over ggml's own rows of type t (tests compare
// against it).
void gemm_reference(wtype t, const void * rows_data, int64_t rows, int64_t k, const void * act, int64_t n,
                    float * dst, int64_t ld);

} // namespace specdec::kernels
