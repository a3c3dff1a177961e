// The kernels, free of N-API: plain pointers and sizes in, results out. addon.cc checks the
// JavaScript arguments and calls these. Each kernel has a JavaScript reference in native/*.ts
// that defines its result; float arithmetic follows it step for step (no FMA contraction).
//
// Errors: std::invalid_argument becomes a TypeError, std::range_error a RangeError.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#define ST_INLINE inline __attribute__((always_inline))

namespace swarmtrain {

constexpr float kMaxFloat = 3.4028234663852886e38f;  // the largest finite float

// ---- runtime dispatch ----

// The code paths, in order: each needs the CPU features of the ones before it. The best one the
// CPU has is used, unless capped (setSimd, or SWARMTRAIN_NATIVE_PORTABLE=1 at load). Kernels
// without an AVX-512 version use their AVX2 one on the AVX-512 path.
enum class Simd { kPortable, kAvx2, kAvx512 };
Simd simd_level();
// Uses the best path up to at_most that the CPU has; returns it.
Simd set_simd(Simd at_most);
// True on the AVX2 path and above (AVX2 + FMA + F16C).
inline bool use_avx2() { return simd_level() >= Simd::kAvx2; }

// ---- fp16 / bf16 scalars (bit exact with F16C, round to nearest even) ----

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return uint16_t(sign | 0x7e00 | ((abs >> 13) & 0x3ff));  // quiet NaN
  if (abs >= 0x477ff000) return uint16_t(sign | 0x7c00);                         // to infinity
  if (abs >= 0x38800000) {                                                       // normal
    const uint32_t m = abs - 0x38000000;
    return uint16_t(sign | ((m + 0xfff + ((m >> 13) & 1)) >> 13));
  }
  if (abs < 0x33000000) return uint16_t(sign);
  const uint32_t e = abs >> 23, mant = (abs & 0x7fffff) | 0x800000, shift = 126 - e;
  uint32_t r = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1))) r++;
  return uint16_t(sign | r);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {
    if (m == 0) return bits_f32(sign);
    return bits_f32(sign | f32_bits(float(m) * 5.9604644775390625e-8f));
  }
  if (e == 31) return bits_f32(sign | 0x7f800000 | (m << 13) | (m ? 0x400000 : 0));
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// ---- two threads ----

// Runs fn(begin, end) over [0, units) on two threads (this one and a new one), in blocks of
// `block` units claimed from a shared counter: on a busy machine a thread that gets less CPU
// just takes fewer blocks instead of holding up the other. Rethrows the first exception (the
// other thread then stops claiming blocks).
template <typename Fn>
void run_two_threads(size_t units, size_t block, Fn fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&](std::exception_ptr& error) {
    try {
      for (size_t b = next.fetch_add(block); b < units && !failed.load(std::memory_order_relaxed); b = next.fetch_add(block))
        fn(b, std::min(units, b + block));
    } catch (...) {
      error = std::current_exception();
      failed = true;
    }
  };
  std::exception_ptr mine, theirs;
  std::thread helper([&] { work(theirs); });
  work(mine);
  helper.join();
  if (mine) std::rethrow_exception(mine);
  if (theirs) std::rethrow_exception(theirs);
}

// ---- optimizer (optim.cc) ----

void axpy(float* dst, const float* src, float w, size_t begin, size_t end);
double sum_squares(const float* x, size_t begin, size_t end);

struct AdamW { double lr, beta1, beta2, eps, weight_decay, c1, c2, grad_scale; };
void adamw(const AdamW& o, float* param, const float* grad, float* m, float* v, size_t begin, size_t end);

struct OuterStep { double lr, momentum; bool nesterov; };
void outer_step(const OuterStep& o, float* param, const float* grad, float* buf, size_t begin, size_t end);

// ---- compression (compress.cc), payload layout in native/format.ts ----

constexpr size_t kHeaderBytes = 16;
constexpr uint32_t kMaxChunk = 4096;

struct Shape { uint32_t n, chunk, k, bits; };

// A chunk record (layout in native/format.ts): scales, kc values, then the offsets as a Rice code
// of their gaps: kc low parts of b bits, then the high parts in unary; each field from a byte.
inline size_t scale_bytes(uint32_t bits) { return bits == 2 ? 4 : 2; }
inline size_t value_bytes(uint32_t kc, uint32_t bits) { return (size_t(kc) * bits + 7) / 8; }
// The Rice parameter of a chunk of len elements keeping kc: the largest b with 2^b <= 7/8 len / kc.
inline uint32_t rice_bits(uint32_t len, uint32_t kc) {
  uint32_t b = 0;
  while (8 * (size_t(kc) << (b + 1)) <= 7 * size_t(len)) b++;
  return b;
}
// Where a record's fields start (scales at 0), and the smallest and largest record in bytes.
struct RecordLayout { uint32_t b; size_t values, low, high, min_bytes, max_bytes; };
inline RecordLayout record_layout(uint32_t len, uint32_t kc, uint32_t bits) {
  RecordLayout l;
  l.b = rice_bits(len, kc);
  l.values = scale_bytes(bits);
  l.low = l.values + value_bytes(kc, bits);
  l.high = l.low + (size_t(kc) * l.b + 7) / 8;
  l.min_bytes = l.high + (size_t(kc) + 7) / 8;
  l.max_bytes = l.high + (size_t(kc) + ((len - kc) >> l.b) + 7) / 8;  // high parts sum to <= (len - kc) >> b
  return l;
}
size_t chunk_count(const Shape& s);
size_t records_start(const Shape& s);  // after the header and the directory of u16 record lengths
size_t max_payload_size(const Shape& s);

void write_header(const Shape& s, uint8_t* out);
// Chunks [c0, c1): error feedback, top-k, quantization. Their records go one after the other from
// where the records before c0 would end at their largest, their lengths into the directory, so
// blocks of chunks can be written in parallel (then pack_records). Throws range_error on
// non-finite values.
void compress_chunks(const Shape& s, float beta, float* e, const float* delta, float* hints, uint8_t* out, size_t c0, size_t c1);
// Moves the records that compress_chunks wrote in blocks of `block` chunks together after the
// directory; returns the payload size.
size_t pack_records(const Shape& s, uint8_t* out, size_t block);

// A payload whose header and directory are checked: the layout of a full chunk's record, and
// where each chunk's record starts (at[c], and at[chunks] = the payload size).
struct Payload {
  Shape s;
  RecordLayout full;
  std::vector<size_t> at;
};
// Checks the header, the size against the bound and the directory (record lengths within their
// chunk's bounds, summing to the size); throws range_error naming the problem.
Payload read_payload(const uint8_t* p, size_t size);
// Checks the records of chunks [c0, c1).
void check_chunks(const Payload& pl, const uint8_t* p, size_t c0, size_t c1);
// dst += w * decode, over chunks [c0, c1) of a checked payload.
void accumulate_chunks(const Payload& pl, const uint8_t* p, float* dst, float w, size_t c0, size_t c1);
// Sum of squares of the decoded values of a checked payload, in payload order.
double payload_sum_squares(const Payload& pl, const uint8_t* p);

// ---- activation codecs (codecs.cc) ----

void f32_to_f16_array(const float* src, uint16_t* dst, size_t n);
void f16_to_f32_array(const uint16_t* src, float* dst, size_t n);
void f32_to_bf16_array(const float* src, uint16_t* dst, size_t n);
void bf16_to_f32_array(const uint16_t* src, float* dst, size_t n);
// Throws range_error on non-finite input (before writing the offending row).
void f32_to_int8_rows(const float* src, int8_t* dst, float* scales, size_t rows, size_t row_length);
void int8_to_f32_rows(const int8_t* src, const float* scales, float* dst, size_t rows, size_t row_length);

}  // namespace swarmtrain
