#include "common/error.h"

#include <vector>

namespace specdec {

std::string format(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    const int n = vsnprintf(nullptr, 0, fmt, ap);
    std::vector<char> buf(n > 0 ? n + 1 : 1);
    vsnprintf(buf.data(), buf.size(), fmt, ap2);
    va_end(ap2);
    va_end(ap);
    return std::string(buf.data(), n > 0 ? n : 0);
}

} // namespace specdec
