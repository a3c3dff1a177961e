// Dense float32 kernels: axpy, sum of squares, the fused AdamW step and the fused outer step.
// Each body is written once as plain C++ following the JavaScript reference (native/reference.ts)
// and compiled twice: for the baseline and, inlined into a target("avx2,fma") function, for AVX2,
// where the compiler vectorizes it. No FMA contraction (-ffp-contract=off): results match the
// reference bit for bit (sumSquares excepted: it sums in another order).
#include "kernels.h"

#include <cmath>

#if defined(__x86_64__)
#define ST_AVX2 __attribute__((target("avx2,fma")))
#define DISPATCH(name, ...) (use_avx2() ? name##_avx2(__VA_ARGS__) : name##_body(__VA_ARGS__))
#else
#define DISPATCH(name, ...) name##_body(__VA_ARGS__)
#endif

namespace swarmtrain {
namespace {

ST_INLINE void axpy_body(float* dst, const float* src, float w, size_t begin, size_t end) {
  for (size_t i = begin; i < end; i++) {
    const float scaled = w * src[i];
    dst[i] += scaled;
  }
}

// Eight float64 partial sums, so the loop vectorizes and the sum is nearly as exact.
ST_INLINE double sum_squares_body(const float* x, size_t begin, size_t end) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = begin;
  for (; i + 8 <= end; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += double(x[i + j]) * double(x[i + j]);
  double s = 0;
  for (; i < end; i++) s += double(x[i]) * double(x[i]);
  for (int j = 0; j < 8; j++) s += acc[j];
  return s;
}

ST_INLINE void adamw_body(const AdamW& o, float* param, const float* grad, float* m, float* v, size_t begin, size_t end) {
  const double b1 = o.beta1, b2 = o.beta2, one_b1 = 1 - o.beta1, one_b2 = 1 - o.beta2;
  for (size_t i = begin; i < end; i++) {
    const double g = double(grad[i]) * o.grad_scale;
    const float mi = float(b1 * double(m[i]) + one_b1 * g);
    const float vi = float(b2 * double(v[i]) + one_b2 * g * g);
    m[i] = mi;
    v[i] = vi;
    const double p = param[i];
    param[i] = float(p - o.lr * ((double(mi) / o.c1) / (std::sqrt(double(vi) / o.c2) + o.eps) + o.weight_decay * p));
  }
}

ST_INLINE void outer_step_body(const OuterStep& o, float* param, const float* grad, float* buf, size_t begin, size_t end) {
  const double mu = o.momentum, lr = o.lr;
  if (mu == 0) {
    for (size_t i = begin; i < end; i++) param[i] = float(double(param[i]) - lr * double(grad[i]));
  } else if (o.nesterov) {
    for (size_t i = begin; i < end; i++) {
      const double g = grad[i];
      const float b = float(mu * double(buf[i]) + g);
      buf[i] = b;
      param[i] = float(double(param[i]) - lr * (g + mu * double(b)));
    }
  } else {
    for (size_t i = begin; i < end; i++) {
      const float b = float(mu * double(buf[i]) + double(grad[i]));
      buf[i] = b;
      param[i] = float(double(param[i]) - lr * double(b));
    }
  }
}

#if defined(__x86_64__)
ST_AVX2 void axpy_avx2(float* dst, const float* src, float w, size_t b, size_t e) { axpy_body(dst, src, w, b, e); }
ST_AVX2 double sum_squares_avx2(const float* x, size_t b, size_t e) { return sum_squares_body(x, b, e); }
ST_AVX2 void adamw_avx2(const AdamW& o, float* p, const float* g, float* m, float* v, size_t b, size_t e) { adamw_body(o, p, g, m, v, b, e); }
ST_AVX2 void outer_step_avx2(const OuterStep& o, float* p, const float* g, float* buf, size_t b, size_t e) { outer_step_body(o, p, g, buf, b, e); }
#endif

}  // namespace

void axpy(float* dst, const float* src, float w, size_t begin, size_t end) { DISPATCH(axpy, dst, src, w, begin, end); }

double sum_squares(const float* x, size_t begin, size_t end) { return DISPATCH(sum_squares, x, begin, end); }

void adamw(const AdamW& o, float* param, const float* grad, float* m, float* v, size_t begin, size_t end) {
  DISPATCH(adamw, o, param, grad, m, v, begin, end);
}

void outer_step(const OuterStep& o, float* param, const float* grad, float* buf, size_t begin, size_t end) {
  DISPATCH(outer_step, o, param, grad, buf, begin, end);
}

}  // namespace swarmtrain
