// Small GGUF files of specdec's own (draft heads, later the coprocessor): a reader that validates
// everything before ggml sees it (typed errors, never a GGML_ASSERT), and a writer that goes
// through a temporary file renamed into place, so an interrupted write leaves nothing behind.
#pragma once

#include "ggml.h"
#include "gguf.h"

#include <cstdint>
#include <string>
#include <vector>

namespace specdec {

class head_file {
public:
    // Opens and parses `path` (tensor data read into memory). `what` names the file in errors.
    head_file(const std::string & path, const std::string & what);
    ~head_file();
    head_file(const head_file &) = delete;
    head_file & operator=(const head_file &) = delete;

    // The general.architecture of a GGUF file, from its header alone (typed errors as the constructor).
    static std::string peek_arch(const std::string & path, const std::string & what);

    // ERR_UNSUPPORTED_ARCHITECTURE unless general.architecture == arch.
    void expect_arch(const std::string & arch) const;
    std::string arch() const;

    uint32_t    u32(const std::string & key, uint32_t min, uint32_t max) const;  // required, in [min, max]
    uint64_t    u64_or(const std::string & key, uint64_t def) const;
    float       f32_or(const std::string & key, float def) const;  // finite, else ERR_BAD_METADATA
    bool        bool_or(const std::string & key, bool def) const;
    std::string str(const std::string & key, const std::string & def) const;
    bool        has(const std::string & key) const;
    // An array of integers (u32/i32), required.
    std::vector<int64_t> ints(const std::string & key) const;

    // A tensor of exactly this shape, converted to f32 (F32, F16 or BF16 in the file).
    void read_f32(const std::string & name, const std::vector<int64_t> & ne, std::vector<float> & out) const;
    // An i64 tensor of exactly n values (e.g. d2t).
    void read_i64(const std::string & name, int64_t n, std::vector<int64_t> & out) const;
    // The tensor or null.
    const ggml_tensor * tensor(const std::string & name) const;

    const std::string & path() const { return path_; }

private:
    std::string    path_, what_;
    gguf_context * g = nullptr;
    ggml_context * ctx = nullptr;
};

class head_file_writer {
public:
    explicit head_file_writer(const std::string & arch);
    ~head_file_writer();
    head_file_writer(const head_file_writer &) = delete;
    head_file_writer & operator=(const head_file_writer &) = delete;

    void set_u32(const std::string & key, uint32_t v);
    void set_u64(const std::string & key, uint64_t v);
    void set_str(const std::string & key, const std::string & v);
    void set_f32(const std::string & key, float v);
    void set_i32_array(const std::string & key, const std::vector<int32_t> & v);
    // Copies every key of `src` that starts with `prefix` (e.g. the target's "tokenizer." keys).
    void copy_keys(const gguf_context * src, const std::string & prefix);
    // Adds an f32 tensor (the data is copied).
    void add_f32(const std::string & name, const std::vector<int64_t> & ne, const float * data);
    // Adds a tensor of another type whose bytes are given (e.g. i64 d2t).
    void add_raw(const std::string & name, ggml_type type, const std::vector<int64_t> & ne, const void * data);

    // Writes `path` via `path.tmp-<pid>` and a rename. ERR_INVALID_OPTION when `path` is a
    // directory or its folder is missing; ERR_INTERNAL on an I/O error.
    void write(const std::string & path);

private:
    gguf_context * g = nullptr;
    std::vector<ggml_context *> ctxs;
};

} // namespace specdec
