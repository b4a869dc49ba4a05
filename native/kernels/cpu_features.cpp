#include "kernels/cpu_features.h"

#include <cstdlib>

#if defined(SPECDEC_NEON_KERNELS) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(SPECDEC_NEON_KERNELS) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(SPECDEC_X86_KERNELS)
#include <cpuid.h>
#endif

namespace specdec::kernels {

#if defined(SPECDEC_X86_KERNELS)
// F16C and AVX-VNNI from CPUID itself: older compilers (clang 14) do not know these names in
// __builtin_cpu_supports. The OS's saving of the YMM state is covered by the avx2 check beside them.
static bool has_f16c() {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
static bool has_avx_vnni() {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)) != 0;
}
#endif

const char * isa_name(isa i) {
    switch (i) {
        case isa::generic:     return "generic";
        case isa::avx2:        return "avx2";
        case isa::avx_vnni:    return "avx-vnni";
        case isa::avx512_vnni: return "avx512-vnni";
        case isa::neon_dotprod: return "neon-dotprod";
    }
    return "unknown";
}

bool isa_from_name(const std::string & name, isa & out) {
    for (isa i : { isa::generic, isa::avx2, isa::avx_vnni, isa::avx512_vnni, isa::neon_dotprod }) {
        if (name == isa_name(i)) {
            out = i;
            return true;
        }
    }
    return false;
}

bool isa_supported(isa i) {
    switch (i) {
        case isa::generic:
            return true;
#if defined(SPECDEC_X86_KERNELS)
        case isa::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
        case isa::avx_vnni:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c() && has_avx_vnni();
        case isa::avx512_vnni:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vnni");
#endif
#if defined(SPECDEC_NEON_KERNELS)
        case isa::neon_dotprod: {
#if defined(__linux__)
            return (getauxval(AT_HWCAP) & (1UL << 20)) != 0;  // HWCAP_ASIMDDP
#elif defined(__APPLE__)
            int v = 0;
            size_t len = sizeof(v);
            return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, nullptr, 0) == 0 && v != 0;
#else
            return false;
#endif
        }
#endif
        default:
            return false;
    }
}

std::vector<isa> supported_isas() {
    std::vector<isa> out;
    for (isa i : { isa::generic, isa::avx2, isa::avx_vnni, isa::avx512_vnni, isa::neon_dotprod }) {
        if (isa_supported(i)) out.push_back(i);
    }
    return out;
}

isa default_isa() {
    if (const char * env = std::getenv("SPECDEC_KERNEL_ISA")) {
        isa forced;
        if (isa_from_name(env, forced) && isa_supported(forced)) return forced;
    }
    return supported_isas().back();
}

} // namespace specdec::kernels
