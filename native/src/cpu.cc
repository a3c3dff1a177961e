// Runtime dispatch: the addon is compiled for a portable baseline (x86-64-v2); the AVX2 code
// paths (functions compiled with target("avx2,fma,f16c")) and the AVX-512 ones (x86-64-v4:
// F, BW, DQ, VL; and BMI2) are used only when the CPU has them.
#include "kernels.h"

#include <atomic>
#include <cstdlib>

namespace swarmtrain {
namespace {

Simd cpu_simd() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (!avx2) return Simd::kPortable;
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 registers.
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2");
  return avx512 ? Simd::kAvx512 : Simd::kAvx2;
#else
  return Simd::kPortable;
#endif
}

bool portable_requested() {
  const char* v = std::getenv("SWARMTRAIN_NATIVE_PORTABLE");
  return v != nullptr && v[0] == '1';
}

const Simd kCpuSimd = cpu_simd();
std::atomic<Simd> simd_in_use{portable_requested() ? Simd::kPortable : kCpuSimd};

}  // namespace

Simd simd_level() { return simd_in_use.load(std::memory_order_relaxed); }

Simd set_simd(Simd at_most) {
  const Simd level = std::min(at_most, kCpuSimd);
  simd_in_use.store(level, std::memory_order_relaxed);
  return level;
}

}  // namespace swarmtrain
