// Runtime dispatch: the addon is compiled for a portable baseline (x86-64-v2); the AVX2 code
// paths (functions compiled with target("avx2,fma,f16c")) are used only when the CPU has them.
#include "kernels.h"

#include <atomic>
#include <cstdlib>

namespace swarmtrain {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool portable_requested() {
  const char* v = std::getenv("SWARMTRAIN_NATIVE_PORTABLE");
  return v != nullptr && v[0] == '1';
}

std::atomic<bool> avx2_enabled{cpu_has_avx2() && !portable_requested()};

}  // namespace

bool use_avx2() { return avx2_enabled.load(std::memory_order_relaxed); }

void set_simd(bool enabled) { avx2_enabled.store(enabled && cpu_has_avx2(), std::memory_order_relaxed); }

}  // namespace swarmtrain
