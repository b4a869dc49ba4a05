// Which instruction sets the CPU kernels may use, detected at run time (a portable binary
// still gets the AVX-512 VNNI kernels on a CPU that has them).
#pragma once

#include <string>
#include <vector>

// The x86 kernels are compiled with per-function target attributes (GCC, Clang), and so are the
// Arm ones (NEON is part of every aarch64 CPU; the int8 dot product instructions are not).
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SPECDEC_X86_KERNELS 1
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define SPECDEC_NEON_KERNELS 1
#endif

namespace specdec::kernels {

enum class isa { generic = 0, avx2, avx_vnni, avx512_vnni, neon_dotprod };

const char * isa_name(isa i);
bool isa_from_name(const std::string & name, isa & out);

// True when this binary has the kernels for `i` and the CPU (and OS) can run them.
bool isa_supported(isa i);

// Every supported instruction set, from the generic C++ kernels up to the best.
std::vector<isa> supported_isas();

// The best supported instruction set, or the one named by SPECDEC_KERNEL_ISA when it is
// supported (for benchmarks and tests that want a particular path).
isa default_isa();

} // namespace specdec::kernels
