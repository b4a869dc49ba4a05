// specdec-check: the exactness checks of the test suite, without Node, for machines that have a
// GPU but no Node.js. Loads a model on a backend, decodes greedily and prints the tokens; with
// --invariance, compares each token's logits decoded alone with its logits inside a batch.
//
//   specdec-check MODEL --backend cpu|cuda --threads N --tokens N --prompt "1 2 3" [--prompt ...]
//   specdec-check MODEL --backend cuda --invariance --prompt "..."
#include "common/error.h"
#include "runtime/backends.h"
#include "runtime/generation.h"
#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

using namespace specdec;

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [--backend B] [--threads N] [--tokens N] [--ctx N] [--invariance] --prompt \"ids\"...\n", argv[0]);
        return 2;
    }
    load_params lp;
    lp.path = argv[1];
    int threads = 1;
    uint32_t n_tokens = 64, n_ctx = 1024;
    bool invariance = false;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string { if (i + 1 >= argc) { fprintf(stderr, "%s needs a value\n", a.c_str()); exit(2); } return argv[++i]; };
        if (a == "--backend") {
            const std::string b = next();
            lp.backend = b == "cuda" ? BACKEND_CUDA : b == "metal" ? BACKEND_METAL : b == "cpu" ? BACKEND_CPU : BACKEND_AUTO;
        } else if (a == "--threads") threads = atoi(next().c_str());
        else if (a == "--tokens") n_tokens = (uint32_t) atoi(next().c_str());
        else if (a == "--ctx") n_ctx = (uint32_t) atoi(next().c_str());
        else if (a == "--invariance") invariance = true;
        else if (a == "--prompt") {
            std::istringstream in(next());
            std::vector<int32_t> p;
            int32_t t;
            while (in >> t) p.push_back(t);
            prompts.push_back(p);
        } else {
            fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    try {
        auto m = model_load(lp);
        session_params sp;
        sp.n_ctx = std::min(n_ctx, m->hp.n_ctx_train);
        sp.n_batch = 512;
        sp.n_threads = threads;
        session s(m, sp);
        fprintf(stderr, "model %s on %s\n", m->hp.arch_name.c_str(), m->device_name.c_str());
        const uint32_t n_vocab = m->hp.n_vocab;
        for (const auto & p : prompts) {
            if (!invariance) {
                s.truncate(0);
                generation_params gp;
                gp.prompt = p;
                gp.max_tokens = n_tokens;
                // end of generation: the tokenizer's EOS/EOT ids from the metadata
                for (const char * key : { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id" }) {
                    const int64_t id = gguf_find_key(m->gguf, key);
                    if (id >= 0 && gguf_get_kv_type(m->gguf, id) == GGUF_TYPE_UINT32) gp.eog.insert((int32_t) gguf_get_val_u32(m->gguf, id));
                }
                generation g(s, gp);
                std::vector<int32_t> out;
                while (!g.done()) g.step(1e9, 1u << 30, out);
                fprintf(stderr, "decode %.1f tok/s, prefill %.1f tok/s\n", g.stats.n_generated * 1000.0 / std::max(1e-9, g.stats.ms_decode),
                        (p.size()) * 1000.0 / std::max(1e-9, g.stats.ms_prefill));
                for (size_t i = 0; i < out.size(); ++i) printf("%s%d", i ? " " : "", out[i]);
                printf("\n");
                continue;
            }
            // invariance: logits of p[k..] one by one vs in one batch (after the first k tokens)
            const size_t k = p.size() / 2;
            std::vector<int32_t> head(p.begin(), p.begin() + k), tail(p.begin() + k, p.end());
            std::vector<float> batched, single, l;
            s.truncate(0);
            s.eval_chain(head, false, false, l);
            s.eval_chain(tail, true, true, batched);
            s.truncate((uint32_t) k);
            for (int32_t t : tail) {
                s.eval_chain({ t }, false, false, l);
                single.insert(single.end(), l.begin(), l.end());
            }
            size_t bit_equal = 0, argmax_equal = 0;
            double max_abs = 0.0;
            for (size_t r = 0; r < tail.size(); ++r) {
                const float * a = batched.data() + r * n_vocab;
                const float * b = single.data() + r * n_vocab;
                bit_equal += memcmp(a, b, n_vocab * sizeof(float)) == 0;
                size_t ia = 0, ib = 0;
                for (size_t j = 0; j < n_vocab; ++j) {
                    if (a[j] > a[ia]) ia = j;
                    if (b[j] > b[ib]) ib = j;
                    max_abs = std::max(max_abs, (double) std::fabs(a[j] - b[j]));
                }
                argmax_equal += ia == ib;
            }
            printf("invariance rows=%zu bit_equal=%zu argmax_equal=%zu max_abs_diff=%g\n", tail.size(), bit_equal, argmax_equal, max_abs);
        }
    } catch (const std::exception & e) {
        fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
