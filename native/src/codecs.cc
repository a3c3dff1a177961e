// Activation codecs: float32 <-> float16 (F16C when the CPU has it), bfloat16, and int8 with
// one scale per row (AVX2 when the CPU has it). Definitions: native/codecs-reference.ts (bit exact).
#include "kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace swarmtrain {
namespace {

constexpr float kInt8MinRowMax = 1e-30f;  // INT8_MIN_ROW_MAX in the reference

// Rounds half to even (the default rounding mode), like the reference's roundHalfEven.
inline float round_even(float y) { return std::nearbyint(y); }

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

// bfloat16: round to nearest even on the bits, NaN made quiet (as f32_to_bf16).
__attribute__((target("avx2")))
void f32_to_bf16_avx2(const float* src, uint16_t* dst, size_t n) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, bias), _mm256_and_si256(_mm256_srli_epi32(x, 16), one)), 16);
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), quiet);
    const __m256i r = _mm256_blendv_epi8(rounded, nan, is_nan);
    // Pack the eight 16-bit results (values fit: no saturation) and undo the lane interleave.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

// Eight int8 values as int32: roundHalfEven(x * inv) clamped to [-127, 127].
__attribute__((target("avx2"), always_inline)) inline
__m256i int8_eight(const float* x, __m256 vinv) {
  const __m256 y = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_set1_ps(127.0f), _mm256_max_ps(_mm256_set1_ps(-127.0f), y)));
}

// The largest |x| of a row, and whether every x is finite (then the max is exact in any order).
__attribute__((target("avx2")))
float row_max_avx2(const float* x, size_t n, bool& finite) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), vmax = _mm256_set1_ps(kMaxFloat);
  __m256 mx = _mm256_setzero_ps(), ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(a, vmax, _CMP_LE_OQ));
    mx = _mm256_max_ps(mx, a);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx);
  float m = 0;
  bool all = _mm256_movemask_ps(ok) == 0xff;
  for (float v : lanes) m = std::max(m, v);
  for (; i < n; i++) {
    const float a = std::fabs(x[i]);
    all &= a <= kMaxFloat;
    m = std::max(m, a);
  }
  finite = all;
  return m;
}

// One int8 row (as the scalar loop in f32_to_int8_rows).
__attribute__((target("avx2")))
void int8_row_avx2(const float* x, int8_t* q, size_t n, float inv) {
  const __m256 vinv = _mm256_set1_ps(inv);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = int8_eight(x + i, vinv), b = int8_eight(x + i + 8, vinv);
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8);  // 16 x int16, in order
    const __m256i bytes = _mm256_packs_epi16(words, words);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, 0x08)));
  }
  for (; i < n; i++) q[i] = int8_t(std::min(127.0f, std::max(-127.0f, round_even(x[i] * inv))));
}
#endif

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
#if defined(__x86_64__)
  if (use_avx2()) return f32_to_bf16_avx2(src, dst, n);
#endif
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

void bf16_to_f32_array(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bits_f32(uint32_t(src[i]) << 16);
}

namespace {

float row_max(const float* x, size_t n, bool& finite) {
#if defined(__x86_64__)
  if (use_avx2()) return row_max_avx2(x, n, finite);
#endif
  float mx = 0;
  bool ok = true;
  for (size_t i = 0; i < n; i++) {
    const float a = std::fabs(x[i]);
    ok &= a <= kMaxFloat;
    mx = std::max(mx, a);
  }
  finite = ok;
  return mx;
}

void int8_row(const float* x, int8_t* q, size_t n, float inv) {
#if defined(__x86_64__)
  if (use_avx2()) return int8_row_avx2(x, q, n, inv);
#endif
  for (size_t i = 0; i < n; i++) q[i] = int8_t(std::min(127.0f, std::max(-127.0f, round_even(x[i] * inv))));
}

}  // namespace

void f32_to_int8_rows(const float* src, int8_t* dst, float* scales, size_t rows, size_t row_length) {
  for (size_t r = 0; r < rows; r++) {
    const float* x = src + r * row_length;
    int8_t* q = dst + r * row_length;
    bool finite;
    const float mx = row_max(x, row_length, finite);
    if (!finite) throw std::range_error("f32ToInt8: non-finite value in row " + std::to_string(r));
    if (mx < kInt8MinRowMax) {
      scales[r] = 0;
      std::fill(q, q + row_length, int8_t(0));
      continue;
    }
    scales[r] = mx / 127.0f;
    int8_row(x, q, row_length, 127.0f / mx);
  }
}

void int8_to_f32_rows(const int8_t* src, const float* scales, float* dst, size_t rows, size_t row_length) {
  for (size_t r = 0; r < rows; r++) {
    const float s = scales[r];
    for (size_t i = r * row_length; i < (r + 1) * row_length; i++) dst[i] = float(src[i]) * s;
  }
}

}  // namespace swarmtrain
