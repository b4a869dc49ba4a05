// Lexical Unit Decoding's fine-tune on ggml-opt: a full fine-tune of an F32 copy of the target.
//
// A training example is one corpus window of R real tokens with G groups of K placeholders hanging
// off it, all rows of one forward pass (build_llama_train_logits with a mask of our own):
//
//   real row i        token x_i, position i, attends the real rows 0..i (causal, as always)
//   group g, row j    the placeholder, position s_g + j (j = 1..K), attends the real rows 0..s_g
//                     and its own group's rows 1..j; it stands in for token x_{s_g + j}
//
// Labels are the target's own distributions (distillation): a real row i learns the target's
// softmax at i (the next token, as the target predicts it: the fine-tune keeps that ability), and
// placeholder j of group g learns the target's softmax at row s_g + j, i.e. its distribution of
// token x_{s_g + j + 1} given the true tokens, which the placeholder rows do not see. Anchors s_g
// are drawn mostly where a lexical unit starts (the target's confidence at s_g + 1 is at least
// alpha: the tokens after the anchor form a unit the placeholders stand in for), the rest anywhere,
// so that the model also learns to be unsure where the target is.
//
// The placeholder is a new input-only token, id n_vocab, with its own trainable embedding row
// (initialised to the mean embedding); the output head keeps n_vocab rows (tied embeddings are
// untied: token_embd gets the extra row, output.weight the head). No text tokenizes to it. The file
// is a full model of the target's architecture with its keys (tokenizer included) plus lud.k,
// lud.alpha and lud.placeholder, its matrices in the target's types (Q8_0 quantized again).
#include "train/lud_train.h"

#include "common/error.h"
#include "heads/head_file.h"
#include "heads/medusa_heads.h"  // tensor_to_f32
#include "train/llama_trainable.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace specdec {

namespace {

struct lud_example {
    std::vector<int32_t> tokens;  // [T]
    std::vector<int32_t> pos;     // [T]
    std::vector<float>   mask;    // [T * T]: row r attends key c when mask[r * T + c] == 0
    std::vector<float>   rows;    // [T]: 1 where the row has a label
    std::vector<float>   labels;  // [T * V]
    std::vector<int32_t> depth;   // [T]: 0 a real row, j the j-th placeholder of its group
    uint64_t labelled = 0, labelled_placeholders = 0;
};

struct lud_shape {
    int64_t R, G, K, T, V;
    int32_t placeholder;
    float   alpha;
};

// Runs the target over `w` and lays out one example (real rows labelled when `real_labels`).
void make_example(target_features & feat, const std::vector<int32_t> & w, const lud_shape & L, bool real_labels,
                  std::mt19937_64 & rng, lud_example & ex, uint64_t & feature_tokens) {
    const int64_t R = L.R, T = L.T, V = L.V, K = L.K, n = (int64_t) w.size();
    std::vector<float> hidden, logits;
    feat.run(w, hidden, logits);
    feature_tokens += (uint64_t) n;
    std::vector<float> probs((size_t) (n * V));
    std::vector<float> conf((size_t) n);
    for (int64_t i = 0; i < n; ++i) {
        softmax_row(logits.data() + (size_t) (i * V), V, probs.data() + (size_t) (i * V));
        conf[(size_t) i] = *std::max_element(probs.begin() + i * V, probs.begin() + (i + 1) * V);
    }

    ex.tokens.assign((size_t) T, 0);
    ex.pos.assign((size_t) T, 0);
    ex.mask.assign((size_t) (T * T), -INFINITY);
    ex.rows.assign((size_t) T, 0.0f);
    ex.labels.assign((size_t) (T * V), 0.0f);
    ex.depth.assign((size_t) T, 0);
    ex.labelled = ex.labelled_placeholders = 0;
    auto label = [&](int64_t row, int64_t from) {
        std::memcpy(ex.labels.data() + (size_t) (row * V), probs.data() + (size_t) (from * V), (size_t) V * sizeof(float));
        ex.rows[(size_t) row] = 1.0f;
        ex.labelled++;
    };
    for (int64_t i = 0; i < R; ++i) {
        ex.tokens[(size_t) i] = i < n ? w[(size_t) i] : 0;  // rows past the window: padding, unlabelled, attended by none
        ex.pos[(size_t) i] = (int32_t) i;
        for (int64_t c = 0; c <= i; ++c) ex.mask[(size_t) (i * T + c)] = 0.0f;
        if (i < n && real_labels) label(i, i);
    }

    // anchors: 3/4 drawn where a unit starts (the target is confident at s + 1), the rest anywhere
    const int64_t first = std::min<int64_t>(4, n - 2);
    std::vector<int64_t> units, any;
    for (int64_t s = std::max<int64_t>(0, first); s + 1 < n; ++s) {
        any.push_back(s);
        if (conf[(size_t) (s + 1)] >= L.alpha) units.push_back(s);
    }
    std::shuffle(units.begin(), units.end(), rng);
    std::shuffle(any.begin(), any.end(), rng);
    std::vector<int64_t> anchors;
    for (int64_t s : units) {
        if ((int64_t) anchors.size() >= (3 * L.G + 3) / 4) break;
        anchors.push_back(s);
    }
    for (int64_t s : any) {
        if ((int64_t) anchors.size() >= L.G) break;
        if (std::find(anchors.begin(), anchors.end(), s) == anchors.end()) anchors.push_back(s);
    }
    for (int64_t g = 0; g < L.G; ++g) {
        const bool used = g < (int64_t) anchors.size();
        const int64_t s = used ? anchors[(size_t) g] : 0;  // an unused group attends row 0 only, unlabelled
        for (int64_t j = 1; j <= K; ++j) {
            const int64_t r = R + g * K + (j - 1);
            ex.tokens[(size_t) r] = L.placeholder;
            ex.pos[(size_t) r] = (int32_t) (s + j);
            ex.depth[(size_t) r] = (int32_t) j;
            for (int64_t c = 0; c <= s; ++c) ex.mask[(size_t) (r * T + c)] = 0.0f;
            for (int64_t jj = 1; jj <= j; ++jj) ex.mask[(size_t) (r * T + R + g * K + (jj - 1))] = 0.0f;
            if (used && s + j < n) {
                label(r, s + j);
                ex.labelled_placeholders++;
            }
        }
    }
}

// Writes a tensor in `type` (quantized from f32 where ggml can without an importance matrix).
void add_as(head_file_writer & wr, const std::string & name, ggml_type type, const std::vector<int64_t> & ne, const float * data) {
    const int64_t n_per_row = ne[0];
    int64_t nrows = 1;
    for (size_t i = 1; i < ne.size(); ++i) nrows *= ne[i];
    const bool convert = type != GGML_TYPE_F32 && ne.size() >= 2 && n_per_row % ggml_blck_size(type) == 0 &&
                         !ggml_quantize_requires_imatrix(type) && ggml_get_type_traits(type)->from_float_ref != nullptr;
    if (!convert) {
        wr.add_f32(name, ne, data);
        return;
    }
    std::vector<uint8_t> q(ggml_row_size(type, n_per_row) * (size_t) nrows);
    ggml_quantize_chunk(type, data, q.data(), 0, nrows, n_per_row, nullptr);
    wr.add_raw(name, type, ne, q.data());
}

std::vector<int64_t> shape_of(const ggml_tensor * t) {
    std::vector<int64_t> ne;
    for (int i = 0; i < ggml_n_dims(t); ++i) ne.push_back(t->ne[i]);
    return ne;
}

} // namespace

train_report train_lud(std::shared_ptr<const model> target, const train_options & o) {
    const hparams & hp = target->hp;
    if (hp.n_vocab_extra > 0) fail("ERR_INVALID_OPTION", "this model is already a Lexical Unit Decoding model: train from the target itself");
    if (o.lud_k < 1 || o.lud_k > 16) fail("ERR_INVALID_OPTION", format("lud k (placeholders) must be 1..16, got %u", o.lud_k));
    if (!(o.lud_alpha > 0.0f && o.lud_alpha <= 1.0f)) fail("ERR_INVALID_OPTION", format("lud alpha must be in (0, 1], got %g", (double) o.lud_alpha));
    if (o.lud_groups < 1 || o.lud_groups > 64) fail("ERR_INVALID_OPTION", format("lud groups must be 1..64, got %u", o.lud_groups));
    if (o.seq_len < 16 || o.seq_len + o.lud_k + 1 > hp.n_ctx_train) {
        fail("ERR_INVALID_OPTION", format("sequence length %u must be 16 .. %u (the context less the placeholders)", o.seq_len,
                hp.n_ctx_train > o.lud_k + 1 ? hp.n_ctx_train - o.lud_k - 1 : 0));
    }
    if (16 * (size_t) hp.n_layer + 16 > 1024) fail("ERR_INVALID_OPTION", format("LUD training takes models of at most 63 layers; this one has %u", hp.n_layer));
    lud_shape L;
    L.R = o.seq_len;
    L.G = o.lud_groups;
    L.K = o.lud_k;
    L.T = L.R + L.G * L.K;
    L.V = hp.n_vocab;
    L.placeholder = (int32_t) hp.n_vocab;
    L.alpha = o.lud_alpha;
    const int64_t T = L.T, V = L.V, d = hp.n_embd;

    train_run run(o);
    train_report & rep = run.rep;
    target_features feat(target, (uint32_t) L.R, o.n_threads, {});
    std::mt19937_64 rng(o.seed ^ 0x10dull);

    // held out: a few windows, only their placeholder rows labelled (the loss of the parallel positions)
    run.report("features");
    std::vector<lud_example> val;
    {
        const int64_t n_val = std::clamp<int64_t>((int64_t) o.val_max / (L.G * L.K), 2, 8);
        corpus_windows vs(o.val_docs, (uint32_t) L.R, 16, /*random =*/ true, o.seed ^ 0x5eedull);
        std::mt19937_64 vrng(o.seed ^ 0xa1dull);
        std::vector<int32_t> win;
        while ((int64_t) val.size() < n_val && vs.next(win)) {
            if (o.abort && o.abort->load()) fail("ERR_ABORTED", "training aborted");
            lud_example ex;
            make_example(feat, win, L, /*real_labels =*/ false, vrng, ex, rep.feature_tokens);
            if (ex.labelled_placeholders > 0) val.push_back(std::move(ex));
        }
    }
    if (val.empty()) {
        fail("ERR_INVALID_OPTION", "the corpus is too short: its validation split has no window of 16 tokens or more (give more text)");
    }
    for (const auto & ex : val) rep.val_datapoints += ex.labelled_placeholders;

    // the trainable copy: every weight of the target in F32, the embedding one row longer
    ggml_context * cp = run.weights();
    trainable_llama w;
    trainable_llama_declare(cp, *target, w);
    ggml_tensor * emb_old = w.tok_embd;
    ggml_tensor * emb_in = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, V + 1);  // [d, V + 1]: row V the placeholder
    ggml_set_name(emb_in, "token_embd.weight");
    ggml_set_param(emb_in);
    if (w.output == emb_old) {
        ggml_set_name(emb_old, "output.weight");  // tied: the target's embedding goes on as the output head
    } else {
        w.params.erase(std::remove_if(w.params.begin(), w.params.end(), [&](const auto & p) { return p.first == emb_old; }), w.params.end());
    }
    w.tok_embd = emb_in;
    ggml_tensor * in_tokens = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    ggml_set_input(in_tokens);
    ggml_tensor * in_pos = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    ggml_tensor * in_mask = ggml_new_tensor_2d(cp, GGML_TYPE_F32, T, T);
    ggml_tensor * in_rows = ggml_new_tensor_2d(cp, GGML_TYPE_F32, 1, T);
    run.alloc_weights();
    trainable_llama_load(w, *target);
    {
        std::vector<float> e;
        tensor_to_f32(target->tok_embd, e);
        e.resize((size_t) (d * (V + 1)), 0.0f);
        for (int64_t t = 0; t < V; ++t) {
            for (int64_t i = 0; i < d; ++i) e[(size_t) (V * d + i)] += e[(size_t) (t * d + i)] / (float) V;
        }
        ggml_backend_tensor_set(emb_in, e.data(), 0, ggml_nbytes(emb_in));
    }

    // the graph: rows without a label get their logits multiplied by 0, which cuts their gradient
    // (ggml's cross-entropy gradient takes every row's labels to sum to 1)
    ggml_context * cc = run.compute(96 * (size_t) hp.n_layer + 64);
    ggml_tensor * logits = ggml_mul(cc, build_llama_train_logits(cc, w, in_tokens, in_pos, in_mask, T, 1), in_rows);  // [V, T]
    ggml_set_output(logits);
    run.init_opt(in_tokens, logits);

    auto place = [&](const lud_example & ex) {
        ggml_backend_tensor_set(in_pos, ex.pos.data(), 0, ggml_nbytes(in_pos));
        ggml_backend_tensor_set(in_mask, ex.mask.data(), 0, ggml_nbytes(in_mask));
        ggml_backend_tensor_set(in_rows, ex.rows.data(), 0, ggml_nbytes(in_rows));
    };
    auto fill = [&](const lud_example & ex) {
        return [&ex](ggml_tensor * in, ggml_tensor * lab) {
            ggml_backend_tensor_set(in, ex.tokens.data(), 0, ggml_nbytes(in));
            ggml_backend_tensor_set(lab, ex.labels.data(), 0, ggml_nbytes(lab));
        };
    };
    // held-out soft cross-entropy of the placeholder rows, their top-1 agreement with the target per
    // depth, and tau = 1 + a1 + a1 a2 + ... (the depths taken as independent)
    auto validate = [&](double & loss, double & acc, std::vector<double> & depth_acc, double & tau) {
        double sum = 0.0, n = 0.0;
        std::vector<double> hit((size_t) L.K, 0.0), cnt((size_t) L.K, 0.0);
        std::vector<int32_t> pred;
        for (const auto & ex : val) {
            place(ex);
            double l = 0.0;
            run.eval_with(fill(ex), l, &pred);
            sum += l * (double) T;  // ggml's mean over all T rows; the unlabelled ones add 0
            n += (double) ex.labelled;
            for (int64_t r = 0; r < T; ++r) {
                if (ex.rows[(size_t) r] == 0.0f || ex.depth[(size_t) r] == 0) continue;
                const float * lb = ex.labels.data() + (size_t) (r * V);
                const int64_t want = std::max_element(lb, lb + V) - lb;
                const size_t j = (size_t) ex.depth[(size_t) r] - 1;
                cnt[j] += 1.0;
                hit[j] += pred[(size_t) r] == want ? 1.0 : 0.0;
            }
        }
        loss = sum / std::max(1.0, n);
        depth_acc.assign((size_t) L.K, 0.0);
        double all_hit = 0.0, all_cnt = 0.0, prod = 1.0;
        tau = 1.0;
        for (size_t j = 0; j < (size_t) L.K; ++j) {
            depth_acc[j] = cnt[j] > 0 ? hit[j] / cnt[j] : 0.0;
            all_hit += hit[j];
            all_cnt += cnt[j];
            prod *= depth_acc[j];
            tau += prod;
        }
        acc = all_cnt > 0 ? all_hit / all_cnt : 0.0;
    };

    run.report("validate");
    validate(rep.val_loss_before, rep.val_accuracy_before, rep.head_accuracy_before, rep.tau_before);
    run.pr.val_loss = rep.val_loss_before;
    run.pr.val_accuracy = rep.val_accuracy_before;
    run.report("train");

    corpus_windows src(o.train_docs, (uint32_t) L.R, 16, /*random =*/ true, o.seed);
    std::vector<int32_t> win;
    lud_example ex;
    double loss_sum = 0.0, loss_n = 0.0;
    while (run.budget_left()) {
        if (!src.next(win)) fail("ERR_INVALID_OPTION", "the corpus is too short: its training split has no window of 16 tokens or more (give more text)");
        run.check_abort();
        make_example(feat, win, L, /*real_labels =*/ true, rng, ex, rep.feature_tokens);
        place(ex);
        run.reset_train_loss();
        run.step_with(fill(ex), ex.labelled);
        loss_sum += run.train_loss() * (double) T;
        loss_n += (double) ex.labelled;
        if (rep.steps % 4 == 0) {
            run.pr.train_loss = loss_sum / std::max(1.0, loss_n);
            loss_sum = loss_n = 0.0;
            run.report("train");
        }
        if (rep.steps % 100 == 0 && run.budget_left()) {
            run.report("validate");
            std::vector<double> da;
            double tau;
            validate(run.pr.val_loss, run.pr.val_accuracy, da, tau);
            run.report("train");
        }
    }

    run.report("validate");
    validate(rep.val_loss_after, rep.val_accuracy_after, rep.head_accuracy_after, rep.tau_after);
    run.pr.val_loss = rep.val_loss_after;
    run.pr.val_accuracy = rep.val_accuracy_after;
    run.check_abort();

    // the file: the target's keys, the LUD keys, every weight in the target's own type
    run.report("write");
    head_file_writer wr(hp.arch_name);
    wr.copy_keys(target->gguf, "");
    wr.set_u32("lud.k", (uint32_t) L.K);
    wr.set_f32("lud.alpha", L.alpha);
    wr.set_u32("lud.placeholder", (uint32_t) L.placeholder);
    wr.set_u64("lud.trained_tokens", rep.tokens);
    std::vector<float> v;
    for (const auto & [x, t] : w.params) {
        v.resize((size_t) ggml_nelements(x));
        ggml_backend_tensor_get(x, v.data(), 0, ggml_nbytes(x));
        add_as(wr, ggml_get_name(x), t->type, shape_of(x), v.data());
    }
    v.resize((size_t) ggml_nelements(emb_in));
    ggml_backend_tensor_get(emb_in, v.data(), 0, ggml_nbytes(emb_in));
    add_as(wr, "token_embd.weight", target->tok_embd->type, shape_of(emb_in), v.data());
    if (target->rope_freqs) {
        tensor_to_f32(target->rope_freqs, v);
        wr.add_f32(ggml_get_name(target->rope_freqs), shape_of(target->rope_freqs), v.data());
    }
    wr.write(o.out);
    rep.seconds = run.seconds();
    return rep;
}

} // namespace specdec
