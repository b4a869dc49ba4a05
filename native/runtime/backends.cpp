#include "runtime/backends.h"
#include "common/error.h"

#include "ggml-cpu.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace specdec {

static void log_callback(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::string s = text ? text : "";
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        if (!s.empty()) set_last_gguf_error(s);
    }
    static const bool debug = getenv("SPECDEC_DEBUG") != nullptr;
    if (debug && text) {
        fputs(text, stderr);
    }
}

void backends_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        ggml_log_set(log_callback, nullptr);
        // touching the registry registers the backends compiled into this binary
        (void) ggml_backend_dev_count();
        ggml_cpu_init();
    });
}

static bool name_starts(ggml_backend_dev_t dev, const char * prefix) {
    return strncmp(ggml_backend_dev_name(dev), prefix, strlen(prefix)) == 0;
}

ggml_backend_dev_t select_device(backend_kind want, backend_kind & chosen) {
    backends_init();
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) {
        fail("ERR_BACKEND_UNAVAILABLE", "the CPU backend is missing from this build");
    }
    auto find = [](const char * prefix) -> ggml_backend_dev_t {
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t d = ggml_backend_dev_get(i);
            if (name_starts(d, prefix)) return d;
        }
        return nullptr;
    };
    switch (want) {
        case BACKEND_CPU:
            chosen = BACKEND_CPU;
            return cpu;
        case BACKEND_CUDA: {
#if !defined(SPECDEC_WITH_CUDA)
            fail("ERR_BACKEND_UNAVAILABLE", "backend 'cuda' is not compiled into this build of specdec (rebuild with SPECDEC_CUDA=1 npm run build)");
#else
            ggml_backend_dev_t d = find("CUDA");
            if (!d) fail("ERR_BACKEND_UNAVAILABLE", "backend 'cuda' is compiled in, but no CUDA device was found");
            chosen = BACKEND_CUDA;
            return d;
#endif
        }
        case BACKEND_METAL: {
#if !defined(SPECDEC_WITH_METAL)
            fail("ERR_BACKEND_UNAVAILABLE", "backend 'metal' is not compiled into this build of specdec (rebuild with SPECDEC_METAL=1 npm run build on macOS)");
#else
            ggml_backend_dev_t d = find("Metal");
            if (!d) d = find("MTL");
            if (!d) fail("ERR_BACKEND_UNAVAILABLE", "backend 'metal' is compiled in, but no Metal device was found");
            chosen = BACKEND_METAL;
            return d;
#endif
        }
        case BACKEND_AUTO:
        default: {
            ggml_backend_dev_t gpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
            if (gpu && (name_starts(gpu, "CUDA") || name_starts(gpu, "Metal") || name_starts(gpu, "MTL"))) {
                chosen = name_starts(gpu, "CUDA") ? BACKEND_CUDA : BACKEND_METAL;
                return gpu;
            }
            chosen = BACKEND_CPU;
            return cpu;
        }
    }
}

std::vector<backend_info> list_devices() {
    backends_init();
    std::vector<backend_info> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        const char * type = "cpu";
        switch (ggml_backend_dev_type(d)) {
            case GGML_BACKEND_DEVICE_TYPE_GPU:   type = "gpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_IGPU:  type = "igpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_ACCEL: type = "accel"; break;
            default: break;
        }
        out.push_back({ ggml_backend_dev_name(d), ggml_backend_dev_description(d), type });
    }
    return out;
}

} // namespace specdec
