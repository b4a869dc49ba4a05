#include "heads/head_file.h"

#include "common/error.h"
#include "runtime/backends.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace specdec {

// The checks before any parsing: a regular file with the GGUF magic. Returns its size.
static uint64_t check_gguf_file(const std::string & path, const std::string & what) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        fail("ERR_FILE_NOT_FOUND", format("%s not found: %s", what.c_str(), path.c_str()));
    }
    if (!S_ISREG(st.st_mode)) {
        fail("ERR_FILE_NOT_FOUND", format("%s is not a regular file: %s", what.c_str(), path.c_str()));
    }
    const uint64_t file_size = (uint64_t) st.st_size;
    {
        FILE * f = fopen(path.c_str(), "rb");
        if (!f) fail("ERR_FILE_NOT_FOUND", format("cannot open %s %s: %s", what.c_str(), path.c_str(), strerror(errno)));
        char magic[4] = { 0 };
        const size_t n = fread(magic, 1, 4, f);
        fclose(f);
        if (n < 4 || memcmp(magic, "GGUF", 4) != 0) {
            fail("ERR_NOT_GGUF", format("%s %s is not a GGUF file (bad magic)", what.c_str(), path.c_str()));
        }
    }
    return file_size;
}

// The header without data, or a typed error.
static gguf_context * parse_header(const std::string & path, const std::string & what) {
    set_last_gguf_error("");
    gguf_context * meta = gguf_init_from_file(path.c_str(), { /*no_alloc =*/ true, /*ctx =*/ nullptr });
    if (!meta) {
        const std::string & why = last_gguf_error();
        const bool truncated = why.find("failed to read") != std::string::npos || why.find("end of file") != std::string::npos;
        fail(truncated ? "ERR_TRUNCATED_FILE" : "ERR_BAD_METADATA",
             format("cannot parse the GGUF header of %s %s%s%s", what.c_str(), path.c_str(), why.empty() ? "" : ": ", why.c_str()));
    }
    return meta;
}

std::string head_file::peek_arch(const std::string & path, const std::string & what) {
    check_gguf_file(path, what);
    gguf_context * meta = parse_header(path, what);
    const int64_t id = gguf_find_key(meta, "general.architecture");
    std::string arch = id >= 0 && gguf_get_kv_type(meta, id) == GGUF_TYPE_STRING ? gguf_get_val_str(meta, id) : "";
    gguf_free(meta);
    return arch;
}

head_file::head_file(const std::string & path, const std::string & what) : path_(path), what_(what) {
    const uint64_t file_size = check_gguf_file(path, what);
    // the header first, without data: every tensor must lie inside the file before anything is allocated
    gguf_context * meta = parse_header(path, what);
    const uint64_t data_offset = gguf_get_data_offset(meta);
    for (int64_t i = 0; i < gguf_get_n_tensors(meta); ++i) {
        const uint64_t end = data_offset + gguf_get_tensor_offset(meta, i) + gguf_get_tensor_size(meta, i);
        if (end > file_size) {
            std::string name = gguf_get_tensor_name(meta, i);
            gguf_free(meta);
            fail("ERR_TRUNCATED_FILE", format("%s %s is truncated: tensor '%s' ends at byte %" PRIu64 " but the file has %" PRIu64 " bytes",
                    what.c_str(), path.c_str(), name.c_str(), end, file_size));
        }
    }
    gguf_free(meta);
    g = gguf_init_from_file(path.c_str(), { /*no_alloc =*/ false, /*ctx =*/ &ctx });
    if (!g) {
        fail("ERR_TRUNCATED_FILE", format("cannot read the tensors of %s %s: %s", what.c_str(), path.c_str(), last_gguf_error().c_str()));
    }
}

head_file::~head_file() {
    if (ctx) ggml_free(ctx);
    if (g) gguf_free(g);
}

std::string head_file::arch() const { return str("general.architecture", ""); }

void head_file::expect_arch(const std::string & want) const {
    const std::string a = arch();
    if (a != want) {
        fail("ERR_UNSUPPORTED_ARCHITECTURE", format("%s %s has architecture '%s', expected '%s'", what_.c_str(), path_.c_str(),
                a.empty() ? "(none)" : a.c_str(), want.c_str()));
    }
}

bool head_file::has(const std::string & key) const { return gguf_find_key(g, key.c_str()) >= 0; }

uint32_t head_file::u32(const std::string & key, uint32_t min, uint32_t max) const {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) fail("ERR_BAD_METADATA", format("%s %s: missing metadata key '%s'", what_.c_str(), path_.c_str(), key.c_str()));
    int64_t v = -1;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT8:  v = gguf_get_val_u8(g, id); break;
        case GGUF_TYPE_UINT16: v = gguf_get_val_u16(g, id); break;
        case GGUF_TYPE_UINT32: v = gguf_get_val_u32(g, id); break;
        case GGUF_TYPE_INT32:  v = gguf_get_val_i32(g, id); break;
        case GGUF_TYPE_UINT64: v = gguf_get_val_u64(g, id) > UINT32_MAX ? -1 : (int64_t) gguf_get_val_u64(g, id); break;
        case GGUF_TYPE_INT64:  v = gguf_get_val_i64(g, id); break;
        default: break;
    }
    if (v < (int64_t) min || v > (int64_t) max) {
        fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be an integer in [%u, %u]", what_.c_str(), path_.c_str(), key.c_str(), min, max));
    }
    return (uint32_t) v;
}

uint64_t head_file::u64_or(const std::string & key, uint64_t def) const {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return def;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT64: return gguf_get_val_u64(g, id);
        case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id);
        default: fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be an unsigned integer", what_.c_str(), path_.c_str(), key.c_str()));
    }
}

float head_file::f32_or(const std::string & key, float def) const {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return def;
    double v;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_FLOAT32: v = gguf_get_val_f32(g, id); break;
        case GGUF_TYPE_FLOAT64: v = gguf_get_val_f64(g, id); break;
        default: fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be a float", what_.c_str(), path_.c_str(), key.c_str()));
    }
    if (!std::isfinite(v)) fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' is not finite", what_.c_str(), path_.c_str(), key.c_str()));
    return (float) v;
}

bool head_file::bool_or(const std::string & key, bool def) const {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return def;
    if (gguf_get_kv_type(g, id) != GGUF_TYPE_BOOL) {
        fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be a bool", what_.c_str(), path_.c_str(), key.c_str()));
    }
    return gguf_get_val_bool(g, id);
}

void head_file::read_i64(const std::string & name, int64_t n, std::vector<int64_t> & out) const {
    const ggml_tensor * t = tensor(name);
    if (!t) fail("ERR_MISSING_TENSOR", format("%s %s: missing tensor '%s'", what_.c_str(), path_.c_str(), name.c_str()));
    if (t->type != GGML_TYPE_I64 && t->type != GGML_TYPE_I32) {
        fail("ERR_TENSOR_TYPE", format("%s %s: tensor '%s' has type %s, expected i64", what_.c_str(), path_.c_str(), name.c_str(), ggml_type_name(t->type)));
    }
    if (ggml_nelements(t) != n || ggml_n_dims(t) != 1) {
        fail("ERR_TENSOR_SHAPE", format("%s %s: tensor '%s' must hold %lld values", what_.c_str(), path_.c_str(), name.c_str(), (long long) n));
    }
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = t->type == GGML_TYPE_I64 ? ((const int64_t *) t->data)[i] : ((const int32_t *) t->data)[i];
}

std::string head_file::str(const std::string & key, const std::string & def) const {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return def;
    if (gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) {
        fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be a string", what_.c_str(), path_.c_str(), key.c_str()));
    }
    return gguf_get_val_str(g, id);
}

std::vector<int64_t> head_file::ints(const std::string & key) const {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) fail("ERR_BAD_METADATA", format("%s %s: missing metadata key '%s'", what_.c_str(), path_.c_str(), key.c_str()));
    if (gguf_get_kv_type(g, id) != GGUF_TYPE_ARRAY) {
        fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be an array of integers", what_.c_str(), path_.c_str(), key.c_str()));
    }
    const gguf_type t = gguf_get_arr_type(g, id);
    const size_t n = gguf_get_arr_n(g, id);
    if (t != GGUF_TYPE_UINT32 && t != GGUF_TYPE_INT32 && t != GGUF_TYPE_UINT64 && t != GGUF_TYPE_INT64) {
        fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be an array of integers", what_.c_str(), path_.c_str(), key.c_str()));
    }
    std::vector<int64_t> out(n);
    const void * data = n ? gguf_get_arr_data(g, id) : nullptr;  // the type is checked: no assert
    for (size_t i = 0; i < n; ++i) {
        switch (t) {
            case GGUF_TYPE_UINT32: out[i] = ((const uint32_t *) data)[i]; break;
            case GGUF_TYPE_INT32:  out[i] = ((const int32_t *) data)[i]; break;
            case GGUF_TYPE_UINT64: out[i] = (int64_t) ((const uint64_t *) data)[i]; break;
            case GGUF_TYPE_INT64:  out[i] = ((const int64_t *) data)[i]; break;
            default: fail("ERR_BAD_METADATA", format("%s %s: metadata '%s' must be an array of integers", what_.c_str(), path_.c_str(), key.c_str()));
        }
    }
    return out;
}

const ggml_tensor * head_file::tensor(const std::string & name) const { return ggml_get_tensor(ctx, name.c_str()); }

void head_file::read_f32(const std::string & name, const std::vector<int64_t> & ne, std::vector<float> & out) const {
    const ggml_tensor * t = tensor(name);
    if (!t) fail("ERR_MISSING_TENSOR", format("%s %s: missing tensor '%s'", what_.c_str(), path_.c_str(), name.c_str()));
    bool ok = true;
    for (size_t i = 0; i < 4; ++i) ok = ok && t->ne[i] == (i < ne.size() ? ne[i] : 1);
    if (!ok) {
        std::string want, got;
        for (size_t i = 0; i < ne.size(); ++i) want += (i ? ", " : "") + std::to_string(ne[i]);
        for (int i = 0; i < ggml_n_dims(t); ++i) got += (i ? ", " : "") + std::to_string(t->ne[i]);
        fail("ERR_TENSOR_SHAPE", format("%s %s: tensor '%s' has shape [%s], expected [%s]", what_.c_str(), path_.c_str(), name.c_str(), got.c_str(), want.c_str()));
    }
    const int64_t n = ggml_nelements(t);
    out.resize(n);
    switch (t->type) {
        case GGML_TYPE_F32:  memcpy(out.data(), t->data, n * sizeof(float)); break;
        case GGML_TYPE_F16:  ggml_fp16_to_fp32_row((const ggml_fp16_t *) t->data, out.data(), n); break;
        case GGML_TYPE_BF16: ggml_bf16_to_fp32_row((const ggml_bf16_t *) t->data, out.data(), n); break;
        default: fail("ERR_TENSOR_TYPE", format("%s %s: tensor '%s' has type %s, expected f32, f16 or bf16", what_.c_str(), path_.c_str(), name.c_str(), ggml_type_name(t->type)));
    }
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(out[i])) {
            fail("ERR_BAD_METADATA", format("%s %s: tensor '%s' holds a non-finite value", what_.c_str(), path_.c_str(), name.c_str()));
        }
    }
}

head_file_writer::head_file_writer(const std::string & arch) {
    g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", arch.c_str());
}

head_file_writer::~head_file_writer() {
    for (auto * c : ctxs) ggml_free(c);
    gguf_free(g);
}

void head_file_writer::set_u32(const std::string & key, uint32_t v) { gguf_set_val_u32(g, key.c_str(), v); }
void head_file_writer::set_u64(const std::string & key, uint64_t v) { gguf_set_val_u64(g, key.c_str(), v); }
void head_file_writer::set_str(const std::string & key, const std::string & v) { gguf_set_val_str(g, key.c_str(), v.c_str()); }
void head_file_writer::set_f32(const std::string & key, float v) { gguf_set_val_f32(g, key.c_str(), v); }
void head_file_writer::set_i32_array(const std::string & key, const std::vector<int32_t> & v) {
    gguf_set_arr_data(g, key.c_str(), GGUF_TYPE_INT32, v.data(), v.size());
}

void head_file_writer::copy_keys(const gguf_context * src, const std::string & prefix) {
    for (int64_t i = 0; i < gguf_get_n_kv(src); ++i) {
        const std::string key = gguf_get_key(src, i);
        if (key.compare(0, prefix.size(), prefix) != 0) continue;
        const gguf_type t = gguf_get_kv_type(src, i);
        switch (t) {
            case GGUF_TYPE_UINT8:   gguf_set_val_u8(g, key.c_str(), gguf_get_val_u8(src, i)); break;
            case GGUF_TYPE_INT8:    gguf_set_val_i8(g, key.c_str(), gguf_get_val_i8(src, i)); break;
            case GGUF_TYPE_UINT16:  gguf_set_val_u16(g, key.c_str(), gguf_get_val_u16(src, i)); break;
            case GGUF_TYPE_INT16:   gguf_set_val_i16(g, key.c_str(), gguf_get_val_i16(src, i)); break;
            case GGUF_TYPE_UINT32:  gguf_set_val_u32(g, key.c_str(), gguf_get_val_u32(src, i)); break;
            case GGUF_TYPE_INT32:   gguf_set_val_i32(g, key.c_str(), gguf_get_val_i32(src, i)); break;
            case GGUF_TYPE_FLOAT32: gguf_set_val_f32(g, key.c_str(), gguf_get_val_f32(src, i)); break;
            case GGUF_TYPE_UINT64:  gguf_set_val_u64(g, key.c_str(), gguf_get_val_u64(src, i)); break;
            case GGUF_TYPE_INT64:   gguf_set_val_i64(g, key.c_str(), gguf_get_val_i64(src, i)); break;
            case GGUF_TYPE_FLOAT64: gguf_set_val_f64(g, key.c_str(), gguf_get_val_f64(src, i)); break;
            case GGUF_TYPE_BOOL:    gguf_set_val_bool(g, key.c_str(), gguf_get_val_bool(src, i)); break;
            case GGUF_TYPE_STRING:  gguf_set_val_str(g, key.c_str(), gguf_get_val_str(src, i)); break;
            case GGUF_TYPE_ARRAY: {
                const gguf_type at = gguf_get_arr_type(src, i);
                const size_t n = gguf_get_arr_n(src, i);
                if (at == GGUF_TYPE_STRING) {
                    std::vector<const char *> strs(n);
                    for (size_t j = 0; j < n; ++j) strs[j] = gguf_get_arr_str(src, i, j);
                    gguf_set_arr_str(g, key.c_str(), strs.data(), n);
                } else if (at != GGUF_TYPE_ARRAY) {
                    gguf_set_arr_data(g, key.c_str(), at, n ? gguf_get_arr_data(src, i) : nullptr, n);
                }
                break;
            }
            default: break;
        }
    }
}

void head_file_writer::add_raw(const std::string & name, ggml_type type, const std::vector<int64_t> & ne, const void * data) {
    int64_t n = 1;
    for (int64_t x : ne) n *= x;
    const size_t bytes = ggml_row_size(type, ne[0]) * (n / ne[0]);
    ggml_init_params ip = { bytes + ggml_tensor_overhead() + 64, nullptr, false };
    ggml_context * c = ggml_init(ip);
    if (!c) fail("ERR_INTERNAL", "out of memory");
    ctxs.push_back(c);
    ggml_tensor * t = nullptr;
    switch (ne.size()) {
        case 1: t = ggml_new_tensor_1d(c, type, ne[0]); break;
        case 2: t = ggml_new_tensor_2d(c, type, ne[0], ne[1]); break;
        case 3: t = ggml_new_tensor_3d(c, type, ne[0], ne[1], ne[2]); break;
        default: t = ggml_new_tensor_4d(c, type, ne[0], ne[1], ne[2], ne[3]); break;
    }
    ggml_set_name(t, name.c_str());
    memcpy(t->data, data, bytes);
    gguf_add_tensor(g, t);
}

void head_file_writer::add_f32(const std::string & name, const std::vector<int64_t> & ne, const float * data) {
    add_raw(name, GGML_TYPE_F32, ne, data);
}

void head_file_writer::write(const std::string & path) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        fail("ERR_INVALID_OPTION", format("the output path %s is a directory; give a file name", path.c_str()));
    }
    const std::string tmp = path + ".tmp-" + std::to_string((long) getpid());
    FILE * f = fopen(tmp.c_str(), "wb");
    if (!f) fail("ERR_INVALID_OPTION", format("cannot write %s: %s", path.c_str(), strerror(errno)));
    const bool ok = gguf_write_to_file_ptr(g, f, false);
    const bool flushed = fflush(f) == 0;
    const bool closed = fclose(f) == 0;
    if (!ok || !flushed || !closed) {
        remove(tmp.c_str());
        fail("ERR_INTERNAL", format("writing %s failed", path.c_str()));
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        remove(tmp.c_str());
        fail("ERR_INVALID_OPTION", format("cannot move the new file into place at %s: %s", path.c_str(), strerror(e)));
    }
}

} // namespace specdec
