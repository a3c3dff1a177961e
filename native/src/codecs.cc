// Activation codecs: float32 <-> float16 (F16C when the CPU has it), bfloat16, and int8 with
// one scale per row. Definitions: native/codecs-reference.ts (bit exact).
#include "kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace swarmtrain {
namespace {

constexpr float kMaxFloat = 3.4028234663852886e38f;
constexpr float kInt8MinRowMax = 1e-30f;  // INT8_MIN_ROW_MAX in the reference

#if defined(__x86_64__)
__attribute__((target("avx2,f16c")))
void f32_to_f16_f16c(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; i++) dst[i] = f32_to_f16(src[i]);
}

__attribute__((target("avx2,f16c")))
void f16_to_f32_f16c(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}
#endif

// Rounds half to even (the default rounding mode), like the reference's roundHalfEven.
inline float round_even(float y) { return std::nearbyint(y); }

}  // namespace

void f32_to_f16_array(const float* src, uint16_t* dst, size_t n) {
#if defined(__x86_64__)
  if (use_avx2()) return f32_to_f16_f16c(src, dst, n);
#endif
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
}

void f16_to_f32_array(const uint16_t* src, float* dst, size_t n) {
#if defined(__x86_64__)
  if (use_avx2()) return f16_to_f32_f16c(src, dst, n);
#endif
  for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

void f32_to_bf16_array(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

void bf16_to_f32_array(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bits_f32(uint32_t(src[i]) << 16);
}

void f32_to_int8_rows(const float* src, int8_t* dst, float* scales, size_t rows, size_t row_length) {
  for (size_t r = 0; r < rows; r++) {
    const float* x = src + r * row_length;
    int8_t* q = dst + r * row_length;
    float mx = 0;
    bool ok = true;
    for (size_t i = 0; i < row_length; i++) {
      const float a = std::fabs(x[i]);
      ok &= a <= kMaxFloat;
      mx = std::max(mx, a);
    }
    if (!ok) throw std::range_error("f32ToInt8: non-finite value in row " + std::to_string(r));
    if (mx < kInt8MinRowMax) {
      scales[r] = 0;
      std::fill(q, q + row_length, int8_t(0));
      continue;
    }
    scales[r] = mx / 127.0f;
    const float inv = 127.0f / mx;
    for (size_t i = 0; i < row_length; i++) {
      const float y = round_even(x[i] * inv);
      q[i] = int8_t(std::min(127.0f, std::max(-127.0f, y)));
    }
  }
}

void int8_to_f32_rows(const int8_t* src, const float* scales, float* dst, size_t rows, size_t row_length) {
  for (size_t r = 0; r < rows; r++) {
    const float s = scales[r];
    for (size_t i = r * row_length; i < (r + 1) * row_length; i++) dst[i] = float(src[i]) * s;
  }
}

}  // namespace swarmtrain
