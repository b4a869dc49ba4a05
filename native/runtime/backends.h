// Backends and devices: which ones are compiled in, choosing one, ggml's log routing.
#pragma once

#include "model/model.h"

#include <string>
#include <vector>

namespace specdec {

// Installs ggml's log callback once: errors are recorded for typed error messages and
// printed only when SPECDEC_DEBUG is set.
void backends_init();

// The device for `want` (AUTO: a GPU when one is compiled in and present, else the CPU).
ggml_backend_dev_t select_device(backend_kind want, backend_kind & chosen);

struct backend_info {
    std::string name;
    std::string description;
    std::string type;  // "cpu", "gpu", "igpu", "accel"
};
std::vector<backend_info> list_devices();

const std::string & last_gguf_error();
void set_last_gguf_error(const std::string & s);

} // namespace specdec
