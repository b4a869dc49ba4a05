// Errors thrown by the native core. Every error a caller can cause carries a code that
// the TypeScript layer maps to a typed error class (lib/errors.ts): the message is
// "[CODE] text". Nothing reachable from user input may end in a GGML_ASSERT/abort.
#pragma once

#include <cstdarg>
#include <stdexcept>
#include <string>

namespace specdec {

struct error : std::runtime_error {
    error(const std::string & code, const std::string & msg) : std::runtime_error("[" + code + "] " + msg) {}
};

std::string format(const char * fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

[[noreturn]] inline void fail(const char * code, const std::string & msg) { throw error(code, msg); }

} // namespace specdec
