// libFuzzer harness: the GGUF loader and its validation, down to a first evaluation of the model
// it yields. The input is a whole file, written to an in-memory file (memfd) whose /proc path goes
// to model_load() (the loader takes paths, and maps the file as it maps a real one). A loaded model
// gets a small session, a prompt prefill, a one-token decode and a two-node tree verification.
//
// Any input may end in a specdec::error (a typed error in JavaScript); anything else is a finding:
// another exception escaping (it would reach JavaScript untyped) aborts here, and a crash, a
// GGML_ASSERT or a sanitizer report is one by itself.
//
// Built by scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined); with SPECDEC_FUZZ_REPLAY
// it links tools/fuzz/replay_main.cpp instead of libFuzzer (any compiler): each argument, a file or
// a folder of files, is run once (the CI replays the corpus of tools/fuzz/make-corpus.ts through the addon instead).
#include "common/error.h"
#include "model/model.h"
#include "runtime/session.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

using namespace specdec;

namespace {

int memfd() {
    static int fd = -1;
    if (fd < 0) {
        fd = memfd_create("specdec-fuzz.gguf", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
    }
    return fd;
}

void run_one(const uint8_t * data, size_t size) {
    const int fd = memfd();
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t) size)) {
        perror("memfd write");
        abort();
    }
    load_params lp;
    lp.path = "/proc/self/fd/" + std::to_string(fd);
    lp.backend = BACKEND_CPU;
    lp.specdec_kernels = size % 2 == 0;  // both kernel sets (the input's parity picks one)
    std::shared_ptr<model> m = model_load(lp);

    session_params sp;
    sp.n_ctx = std::min<uint32_t>(32, m->hp.n_ctx_train);
    sp.n_batch = 8;
    sp.n_threads = 1;
    session s(m, sp);
    const uint32_t n_vocab = m->hp.n_vocab;
    auto tok = [&](size_t i) { return (int32_t) ((size > i ? data[size - 1 - i] : i) % n_vocab); };
    std::vector<float> logits;
    std::vector<int32_t> prompt;
    for (size_t i = 0; i < std::min<uint32_t>(4, sp.n_ctx - 3); ++i) prompt.push_back(tok(i));
    s.eval_chain(prompt, false, false, logits);    // prefill
    s.eval_chain({ tok(5) }, false, true, logits);  // one-token decode
    const std::vector<int32_t> tree = { tok(6), tok(7) };
    s.eval_tree(tree, { -1, -1 }, { 0, 1 }, logits);  // two siblings
    s.commit_path(tree, { 1 });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    try {
        run_one(data, size);
    } catch (const specdec::error &) {
        // a typed error: what bad input should give
    } catch (const std::exception & e) {
        fprintf(stderr, "untyped exception escaped: %s\n", e.what());
        abort();
    }
    return 0;
}
