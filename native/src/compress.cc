// Error feedback + exact chunked top-k + 2/8-bit quantization + Rice-coded offsets, and the
// checked decoder.
// Definition (bit for bit): native/compress-reference.ts. Payload layout: native/format.ts.
//
// Speed: the work is one pass over e and delta (the memory-bandwidth floor), so the pass also
// picks candidates: elements with |e| >= a per-chunk threshold hint carried from the previous
// call, compacted (AVX2: a lookup table of lane permutations; AVX-512: compress). When at
// least kc candidates come out, the top kc of the chunk are among them (the kc-th largest is
// >= the hint), and the exact cut runs on those few only, by a branch-free search on the bits
// of the magnitudes. Without a hint (first call) one is estimated from a sample of the chunk;
// when a hint is too high, the chunk, now in cache, is scanned again with lower thresholds.
// Hints change speed, never the result.
// Three code paths (portable, AVX2, AVX-512), chosen at run time, give the same bytes.
// There is no second pass over memory: the selection and quantization work on the chunk in L1.
// On the AVX-512 path the pass itself runs at the floor (its accesses start on cache lines and
// its candidate stores lag behind its loads, see pass_avx512). What costs time beyond the floor
// on one thread is the selection's and quantization's compute (~0.3 us a chunk), during which
// little memory traffic is in flight; hence the vector versions of each step. Prefetching the
// next chunk during that compute, or splitting the pass around it, measured no faster.
// Measured (npm run bench -- compress, 2-vCPU AMD EPYC VM, AVX-512 path, shared with another
// job: load 2-5, eleven runs) at 16M and 64M elements: 1.40-1.76x the floor on one thread,
// median 1.52-1.56 (1.64-2.15x before those two changes), and 0.96-1.65x on two, median 1.33-1.37.
// Those runs used payload format 1; format 2's figures, format 1 beside them, are in docs/BENCHMARKS.md.
// Two-thread calls split the chunks in blocks. Records vary in size (the offsets' Rice code), so
// each block writes its records from where they would start if every record before had its
// largest size, and pack_records then moves the blocks together: a few hundred kilobytes of
// memmove per call at 64M elements, against the pass's hundreds of megabytes.
#include "kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace swarmtrain {
namespace {

constexpr uint32_t kMagic = 0x43545753;  // 'SWTC'
constexpr uint8_t kVersion = 2;
constexpr uint16_t kMaxF16 = 0x7bff;
// The next hint is the magnitude at rank 2 kc, or the smallest candidate when there are fewer
// (rank based: error feedback piles values just under the cutoff, so a fraction of the cutoff
// would let far too many through). Measured over many steps with beta 0.95 and normal,
// heavy-tailed and spiky deltas: ~1.9 kc candidates, and a hint too high for 0.4-1.5% of the
// chunks (1.25 kc: 12-17%). Then the chunk is scanned again with the hint lowered by
// kRetryFactor (it is in cache by then), down to a full scan.
constexpr float kRetryFactor = 0.75f;
constexpr size_t kAhead = 4096;  // elements: one default chunk
constexpr size_t kLengthBatch = 64;  // chunks

uint16_t scale_bits(double x) {
  const uint16_t h = f32_to_f16(float(x));
  return h > kMaxF16 ? kMaxF16 : h;
}

uint32_t chunk_length(const Shape& s, size_t c) {
  const size_t start = c * size_t(s.chunk);
  return uint32_t(std::min<size_t>(s.chunk, s.n - start));
}

// + 16: vector code stores whole vectors of up to 16 lanes past the last value kept.
struct Scratch {
  uint16_t cand[kMaxChunk + 16];
  int32_t mag[kMaxChunk + 16];  // their |e| as bits: ordered like the values when finite
  uint16_t picked[kMaxChunk + 16];
  float picked_mag[kMaxChunk + 16];
  uint16_t gaps[kMaxChunk];  // between the picked offsets
  // The offsets' code, + 8 bytes for BitWriter: kc b <= L / 2 bits of low parts (as b <=
  // log2(7 L / (8 kc))), and kc + (L - kc) >> b <= L bits of high parts.
  uint8_t low[kMaxChunk / 16 + 8];
  uint8_t high[kMaxChunk / 8 + 8];
  uint8_t lengths[2 * kLengthBatch];  // directory entries not yet stored
};

// e = beta * e + d over one chunk; appends the offsets with !(|e| < hint) to cand and returns
// their count. NaN and infinities are always candidates, so checking the candidates checks the
// chunk (a NaN must never be skipped silently).
// With update false, only collects (e is already updated: a second look with a lower hint).
template <bool update>
ST_INLINE size_t pass_portable(float beta, float* e, const float* d, uint32_t len, float hint, uint16_t* cand) {
  size_t count = 0;
  for (uint32_t i = 0; i < len; i++) {
    float v = e[i];
    if (update) {
      const float scaled = beta * v;
      v = scaled + d[i];
      e[i] = v;
    }
    cand[count] = uint16_t(i);
    count += !(std::fabs(v) < hint);
  }
  return count;
}

#if defined(__x86_64__)
// For each 8-bit lane mask, the indices of its set bits first.
struct CompactTable {
  alignas(16) uint16_t lanes[256][8];
  CompactTable() {
    for (unsigned m = 0; m < 256; m++)
      for (unsigned lane = 0, j = 0; lane < 8; lane++)
        if (m & (1u << lane)) lanes[m][j++] = lane;
  }
};
const CompactTable kCompact;

// Eight elements of the pass: update, compare, and a branch-free compaction (store the lanes'
// offsets, selected ones first, and advance by how many were selected).
template <bool update>
__attribute__((target("avx2,fma"), always_inline)) inline
void pass_eight(__m256 vbeta, __m256 vhint, float* e, const float* d, uint32_t i, uint16_t* cand, size_t& count) {
  __m256 v = _mm256_loadu_ps(e + i);
  if (update) {
    v = _mm256_add_ps(_mm256_mul_ps(vbeta, v), _mm256_loadu_ps(d + i));
    _mm256_storeu_ps(e + i, v);
  }
  const __m256 a = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  const unsigned mask = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(a, vhint, _CMP_NLT_UQ)));
  const __m128i lanes = _mm_load_si128(reinterpret_cast<const __m128i*>(kCompact.lanes[mask]));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(cand + count), _mm_add_epi16(lanes, _mm_set1_epi16(short(i))));
  count += __builtin_popcount(mask);
}

template <bool update>
__attribute__((target("avx2,fma")))
size_t pass_avx2(float beta, float* e, const float* d, uint32_t len, float hint, uint16_t* cand) {
  const __m256 vbeta = _mm256_set1_ps(beta), vhint = _mm256_set1_ps(hint);
  size_t count = 0;
  uint32_t i = 0;
  for (; i + 16 <= len; i += 16) {
    if (update) {  // bring in the next chunk meanwhile: its pass then runs from cache
      _mm_prefetch(reinterpret_cast<const char*>(e + i + kAhead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(d + i + kAhead), _MM_HINT_T0);
    }
    pass_eight<update>(vbeta, vhint, e, d, i, cand, count);
    pass_eight<update>(vbeta, vhint, e, d, i + 8, cand, count);
  }
  for (; i + 8 <= len; i += 8) pass_eight<update>(vbeta, vhint, e, d, i, cand, count);
  const size_t tail = pass_portable<update>(beta, e + i, d + i, len - i, hint, cand + count);
  for (size_t j = count; j < count + tail; j++) cand[j] = uint16_t(cand[j] + i);  // tail offsets are relative
  count += tail;
  return count;
}
#endif

typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));

// The sums of the magnitudes >= mid and < mid as the reference adds them: four partial sums by
// position mod 4, combined (s0 + s1) + (s2 + s3); and how many are >= mid.
ST_INLINE void split_sums_in_order(const float* mag, uint32_t kc, double mid, double& sum_hi, double& sum_lo, uint32_t& n_hi) {
  // Four lanes = the four partial sums. Branch free (the split is unpredictable): the high
  // part of a is a or +0.0 by a mask, the low part a minus that, both exact, and adding +0.0
  // leaves a sum unchanged: the same sums as the reference's if/else.
  const v4d mid4 = {mid, mid, mid, mid};
  v4d hi4 = {0, 0, 0, 0}, lo4 = {0, 0, 0, 0};
  v4l n_hi4 = {0, 0, 0, 0};
  uint32_t j = 0;
  for (; j + 4 <= kc; j += 4) {
    const v4d a = {mag[j], mag[j + 1], mag[j + 2], mag[j + 3]};
    const v4l high = a >= mid4;
    const v4d part = v4d(v4l(a) & high);
    hi4 += part;
    lo4 += a - part;
    n_hi4 -= high;
  }
  for (; j < kc; j++) {
    const double a = mag[j];
    if (a >= mid) { hi4[j & 3] += a; n_hi4[j & 3]++; } else { lo4[j & 3] += a; }
  }
  n_hi = uint32_t(n_hi4[0] + n_hi4[1] + n_hi4[2] + n_hi4[3]);
  sum_hi = (hi4[0] + hi4[1]) + (hi4[2] + hi4[3]);
  sum_lo = (lo4[0] + lo4[1]) + (lo4[2] + lo4[3]);
}

// The sum of the magnitudes >= mid, in any order (see two_levels), and how many they are.
ST_INLINE double sum_at_least(const float* mag, uint32_t kc, double mid, uint32_t& n) {
  const v4d mid4 = {mid, mid, mid, mid};
  v4d sum_a = {0, 0, 0, 0}, sum_b = {0, 0, 0, 0};  // two chains of additions, not one
  v4l n4 = {0, 0, 0, 0};
  uint32_t j = 0;
  for (; j + 8 <= kc; j += 8) {
    v4f f, g;
    std::memcpy(&f, mag + j, sizeof f);
    std::memcpy(&g, mag + j + 4, sizeof g);
    const v4d a = __builtin_convertvector(f, v4d), b = __builtin_convertvector(g, v4d);
    const v4l high_a = a >= mid4, high_b = b >= mid4;
    sum_a += v4d(v4l(a) & high_a);
    sum_b += v4d(v4l(b) & high_b);
    n4 -= high_a + high_b;
  }
  double sum = 0;
  n = 0;
  for (; j < kc; j++) {
    if (mag[j] >= mid) { sum += mag[j]; n++; }
  }
  n += uint32_t(n4[0] + n4[1] + n4[2] + n4[3]);
  const v4d sum4 = sum_a + sum_b;
  return sum + (sum4[0] + sum4[1]) + (sum4[2] + sum4[3]);
}

// The 2-bit magnitudes (as in the reference): midrange split, then up to three Lloyd
// iterations (each level the mean of the magnitudes nearer to it), stopping at a fixed point.
ST_INLINE void two_levels(const float* mag, uint32_t kc, double& lo_out, double& hi_out) {
  uint32_t mn_bits = UINT32_MAX, mx_bits = 0;  // magnitudes: ordered like their bits, which vectorizes
  for (uint32_t j = 0; j < kc; j++) {
    mn_bits = std::min(mn_bits, f32_bits(mag[j]));
    mx_bits = std::max(mx_bits, f32_bits(mag[j]));
  }
  const float mn = bits_f32(mn_bits), mx = bits_f32(mx_bits);
  // All are multiples of the smallest one's unit in the last place, and below 2^(spread + 24)
  // of those units: when the spread of the exponents is at most 16, any sum of up to 4096 of
  // them is below 2^52 units, exact in float64. Then the order of the additions cannot change
  // a sum: one pass with wide accumulators, and the low sum is the total minus the high one.
  // (Else, in the reference's order; a zero among them counts as the smallest exponent.)
  const bool exact = int(mx_bits >> 23) - std::max(int(mn_bits >> 23), 1) <= 16;
  uint32_t n_all;
  const double total = exact ? sum_at_least(mag, kc, 0.0, n_all) : 0;
  double lo = mn, hi = mx;
  uint32_t last_n_hi = UINT32_MAX;
  for (int iter = 0; iter < 3; iter++) {
    const double mid = (lo + hi) / 2;
    double sum_hi, sum_lo;
    uint32_t n_hi;
    if (exact) {
      sum_hi = sum_at_least(mag, kc, mid, n_hi);
      sum_lo = total - sum_hi;
    } else {
      split_sums_in_order(mag, kc, mid, sum_hi, sum_lo, n_hi);
    }
    // The high group is the n_hi largest magnitudes: the same count means the same split.
    if (n_hi == last_n_hi) break;
    last_n_hi = n_hi;
    hi = sum_hi / n_hi;
    lo = n_hi < kc ? sum_lo / (kc - n_hi) : hi;
  }
  lo_out = lo;
  hi_out = hi;
}

// Appends bit fields, LSB first, to a buffer with 8 bytes of room past them: each put stores a
// whole word, without a branch, and the next put overwrites what lies past its bits.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* p) : p_(p) {}
  // v < 2^bits, bits <= 56.
  ST_INLINE void put(uint64_t v, uint32_t bits) {
    acc_ |= v << n_;
    n_ += bits;
    std::memcpy(p_, &acc_, 8);  // little-endian, as the fields
    p_ += n_ >> 3;
    acc_ >>= n_ & ~7u;
    n_ &= 7;
  }
  // `zeros` zero bits, then a one.
  ST_INLINE void put_unary(uint32_t zeros) {
    for (; zeros > 48; zeros -= 48) put(0, 48);
    put(uint64_t(1) << zeros, zeros + 1);
  }
  // The end of the field, its last byte included.
  uint8_t* end() const { return p_ + (n_ > 0); }

 private:
  uint8_t* p_;
  uint64_t acc_ = 0;
  uint32_t n_ = 0;  // bits in acc_ not yet past p_, < 8 between puts
};

// Four 16-bit lanes of a word: the offsets' code is written and read four gaps at a time.
constexpr uint64_t kLanes = 0x0001000100010001;

// The low b bits of each lane, lane i to bit b i (b <= 12), and back.
ST_INLINE uint64_t pack4(uint64_t lanes, uint32_t b) {
  const uint64_t field = (uint64_t(1) << b) - 1;
  return (lanes & field) | (lanes >> (16 - b) & field << b) | (lanes >> (32 - 2 * b) & field << 2 * b) | (lanes >> (48 - 3 * b) & field << 3 * b);
}

ST_INLINE uint64_t unpack4(uint64_t bits, uint32_t b) {
  const uint64_t field = (uint64_t(1) << b) - 1;
  return (bits & field) | (bits << (16 - b) & field << 16) | (bits << (32 - 2 * b) & field << 32) | (bits << (48 - 3 * b) & field << 48);
}

// Where each lane's one goes in the high parts of four gaps (lanes of g) that follow `before`
// bits: the lanes' high parts summed up to it, plus one per lane before (a multiplication sums).
ST_INLINE uint64_t unary_ends(uint64_t g, uint32_t b, uint64_t before) {
  return ((g >> b) & (0xffffu >> b) * kLanes) * kLanes + 0x0003000200010000 + before * kLanes;
}

// The word with ones at the four lanes' bits (each below 64).
ST_INLINE uint64_t ones_at(uint64_t lanes) {
  return uint64_t(1) << (lanes & 63) | uint64_t(1) << (lanes >> 16 & 63) | uint64_t(1) << (lanes >> 32 & 63) | uint64_t(1) << (lanes >> 48);
}

// The gaps between the picked offsets (ascending), the first from 0.
ST_INLINE void find_gaps(Scratch& s, uint32_t kc) {
  s.gaps[0] = s.picked[0];
  for (uint32_t j = 1; j < kc; j++) s.gaps[j] = uint16_t(s.picked[j] - s.picked[j - 1] - 1);
}

// Gaps [j, kc) one at a time.
ST_INLINE void put_gaps(const uint16_t* gaps, uint32_t j, uint32_t kc, uint32_t b, BitWriter& low, BitWriter& high) {
  for (; j < kc; j++) {
    low.put(gaps[j] & ((1u << b) - 1), b);
    high.put_unary(gaps[j] >> b);
  }
}

// Copies the offsets' code from the scratch's buffers into the record at `out`; returns the
// record's length.
ST_INLINE size_t copy_offsets(const Scratch& s, const BitWriter& high, const RecordLayout& l, uint8_t* out) {
  std::memcpy(out + l.low, s.low, l.high - l.low);
  const size_t high_bytes = size_t(high.end() - s.high);
  std::memcpy(out + l.high, s.high, high_bytes);
  return l.high + high_bytes;
}

// The offsets' Rice code (picked ascending) into the record at `out`, through the scratch's
// buffers; returns the record's length. Eight gaps at a time, as the 16-bit lanes of two words:
// one put of their low parts (b <= 7), and one of their high parts when those fit (almost
// always: b makes their mean about 1.5), so the writers' dependency chains are short.
ST_INLINE size_t write_offsets(Scratch& s, uint32_t kc, const RecordLayout& l, uint8_t* out) {
  find_gaps(s, kc);
  BitWriter low(s.low), high(s.high);
  const uint32_t b = l.b;
  uint32_t j = 0;
  if (b <= 7) {
    for (; j + 8 <= kc; j += 8) {
      uint64_t g0, g1;
      std::memcpy(&g0, s.gaps + j, 8);
      std::memcpy(&g1, s.gaps + j + 4, 8);
      low.put(pack4(g0, b) | pack4(g1, b) << 4 * b, 8 * b);
      const uint64_t ends0 = unary_ends(g0, b, 0), ends1 = unary_ends(g1, b, (ends0 >> 48) + 1);
      const uint32_t last = uint32_t(ends1 >> 48);
      if (last < 56) {
        high.put(ones_at(ends0) | ones_at(ends1), last + 1);
      } else {
        for (uint32_t i = 0; i < 8; i++) high.put_unary(s.gaps[j + i] >> b);
      }
    }
  }
  put_gaps(s.gaps, j, kc, b, low, high);
  return copy_offsets(s, high, l, out);
}

// The two fp16 scales of a 2-bit record; returns the levels as floats.
ST_INLINE void write_levels(const float* mag, uint32_t kc, uint8_t* out, float& lo_f, float& hi_f) {
  double lo, hi;
  two_levels(mag, kc, lo, hi);
  const uint16_t lo_bits = scale_bits(lo), hi_bits = scale_bits(hi);
  out[0] = uint8_t(lo_bits); out[1] = uint8_t(lo_bits >> 8);
  out[2] = uint8_t(hi_bits); out[3] = uint8_t(hi_bits >> 8);
  lo_f = f16_to_f32(lo_bits);
  hi_f = f16_to_f32(hi_bits);
}

// 8-bit values: the fp16 step and the values, leaving the quantization error in e.
ST_INLINE void quantize_8bit(float* e, const uint16_t* picked, const float* mag, uint32_t kc, uint8_t* out, uint8_t* values) {
  float mx = 0;
  for (uint32_t j = 0; j < kc; j++) mx = std::max(mx, mag[j]);
  const uint16_t step_bits = scale_bits(double(mx) / 127);
  out[0] = uint8_t(step_bits); out[1] = uint8_t(step_bits >> 8);
  const float step = f16_to_f32(step_bits);
  for (uint32_t j = 0; j < kc; j++) {
    float& v = e[picked[j]];
    int q = step == 0 ? 0 : int(std::min(127.0, std::floor(std::fabs(double(v)) / step + 0.5)));
    if (v < 0) q = -q;
    values[j] = uint8_t(int8_t(q));
    const float dequant = float(q) * step;
    v = v - dequant;
  }
}

// Writes the scales and values of a chunk record for the picked offsets (ascending, with their
// magnitudes) and leaves the quantization error in e.
ST_INLINE void quantize_chunk(float* e, const uint16_t* picked, const float* mag, uint32_t kc, uint32_t bits, uint8_t* out) {
  uint8_t* values = out + scale_bytes(bits);
  if (bits == 8) return quantize_8bit(e, picked, mag, kc, out, values);
  float lo_f, hi_f;
  write_levels(mag, kc, out, lo_f, hi_f);
  const uint32_t lo_level = f32_bits(lo_f), hi_level = f32_bits(hi_f);
  unsigned codes = 0;
  for (uint32_t j = 0; j < kc; j++) {
    float& v = e[picked[j]];
    const double a = mag[j];
    const uint32_t high = a - lo_f > hi_f - a, negative = v < 0;
    // Bit selects rather than branches (unpredictable): dequant = +-level.
    const uint32_t level = (lo_level & (high - 1)) | (hi_level & (0 - high));
    v = v - bits_f32(level | (negative << 31));
    codes |= (negative | (high << 1)) << ((j & 3) * 2);
    if ((j & 3) == 3) {
      values[j >> 2] = uint8_t(codes);
      codes = 0;
    }
  }
  if (kc % 4 != 0) values[kc >> 2] = uint8_t(codes);
}

// How many of mag[0..count) are >= t; branch free, so it vectorizes.
ST_INLINE uint32_t count_at_least(const int32_t* mag, size_t count, int32_t t) {
  uint32_t c = 0;
  for (size_t j = 0; j < count; j++) c += mag[j] >= t;
  return c;
}

// The smallest of mag[0..count) that is >= t (there is one).
ST_INLINE int32_t min_at_least(const int32_t* mag, size_t count, int32_t t) {
  int32_t m = INT32_MAX;
  for (size_t j = 0; j < count; j++) m = std::min(m, mag[j] >= t ? mag[j] : INT32_MAX);
  return m;
}

// The r-th largest of mag[0..count), 1 <= r <= count, all of them in [lo, hi]: the largest t
// with at least r values >= t, found bit by bit below the bits lo and hi share, with
// branch-free counting passes (nth_element's branches mispredict), and finished early once
// exactly r values are >= t: then it is the smallest of those.
ST_INLINE int32_t rank_value(const int32_t* mag, size_t count, size_t r, int32_t lo, int32_t hi) {
  const uint32_t differ = uint32_t(lo ^ hi);
  if (differ == 0) return lo;
  const int top = 31 - __builtin_clz(differ);
  int32_t t = hi & ~int32_t((2u << top) - 1);  // <= lo: all count
  for (int32_t bit = 1 << top; bit != 0; bit >>= 1) {
    const uint32_t c = count_at_least(mag, count, t | bit);
    if (c >= r) {
      t |= bit;
      if (c == r) return min_at_least(mag, count, t);
    }
  }
  return t;
}

// About the r-th largest |e| of a chunk, from every 16th value (len >= 16 r).
ST_INLINE float sampled_rank(const float* e, uint32_t len, size_t r, Scratch& s) {
  const size_t m = len / 16;
  int32_t lo = INT32_MAX, hi = 0;
  for (size_t j = 0; j < m; j++) {
    const int32_t a = int32_t(f32_bits(e[16 * j]) & 0x7fffffff);
    s.mag[j] = a;
    lo = std::min(lo, a);
    hi = std::max(hi, a);
  }
  return bits_f32(uint32_t(rank_value(s.mag, m, std::max<size_t>(1, r / 16), lo, hi)));
}

// Fills picked (ascending offsets) with the kc candidates of largest magnitude, given t, the
// kc-th largest, and how many are >= t.
ST_INLINE void pick(Scratch& s, size_t count, uint32_t kc, int32_t t, size_t at_least_t) {
  if (at_least_t == kc) {  // the usual case: no tie to break at t
    for (size_t j = 0, m = 0; j < count; j++) {
      const int32_t a = s.mag[j];
      s.picked[m] = s.cand[j];
      s.picked_mag[m] = bits_f32(uint32_t(a));
      m += a >= t;
    }
  } else {  // keep the values above t, and the first of those equal to t (lower offsets)
    for (size_t j = 0, m = 0, ties = kc - count_at_least(s.mag, count, t + 1); j < count; j++) {
      const int32_t a = s.mag[j];
      const bool take = a > t || (a == t && ties > 0);
      ties -= a == t && take;
      s.picked[m] = s.cand[j];
      s.picked_mag[m] = bits_f32(uint32_t(a));
      m += take;
    }
  }
}

// Exact top kc of the chunk among the candidates cand[0..count) (ascending offsets, a
// superset of the top kc and of the non-finite values): fills picked in ascending order and
// sets the next hint. Returns false, selecting nothing, if a candidate is not finite.
ST_INLINE bool select_top(const float* e, Scratch& s, size_t count, uint32_t kc, float& hint) {
  int32_t lo = INT32_MAX, hi = 0;
  for (size_t j = 0; j < count; j++) {
    const int32_t a = int32_t(f32_bits(e[s.cand[j]]) & 0x7fffffff);
    s.mag[j] = a;
    lo = std::min(lo, a);
    hi = std::max(hi, a);
  }
  if (hi > 0x7f7fffff) return false;  // infinity or NaN
  const int32_t t = rank_value(s.mag, count, kc, lo, hi);
  const size_t rank = std::min<size_t>(count, 2 * size_t(kc));
  const int32_t next = rank == count ? lo : rank_value(s.mag, count, rank, lo, t);
  pick(s, count, kc, t, count_at_least(s.mag, count, t));
  hint = bits_f32(uint32_t(next));
  return true;
}


#if defined(__x86_64__)
// The AVX-512 path (x86-64-v4: F, BW, DQ, VL): sixteen lanes, masks instead of a lookup table,
// compress instructions for the compaction (register form: the memory form is microcoded on
// AMD), masked loads for the tails. (Compressing the magnitudes in the pass as well makes it
// three times slower on Zen 5: the selection gathers them.)
#define ST_AVX512_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi2"
#define ST_AVX512 __attribute__((target(ST_AVX512_TARGET)))
#define ST_AVX512_INLINE __attribute__((target(ST_AVX512_TARGET), always_inline)) inline

ST_AVX512_INLINE __mmask16 lanes_below(size_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// Sixteen offsets, 16 <-> 32 bits wide. (The zero-masked forms: GCC 12 warns about the plain
// ones' undefined source operand.)
ST_AVX512_INLINE __m512i widen(const uint16_t* p) { return _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
ST_AVX512_INLINE void store_narrow(uint16_t* p, __m512i x) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_maskz_cvtepi32_epi16(0xffff, x)); }

// The smallest and largest lanes (through memory: the register forms warn with GCC 12 too).
ST_AVX512_INLINE int32_t reduce_min(__m512i x) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, x);
  return *std::min_element(lanes, lanes + 16);
}

ST_AVX512_INLINE int32_t reduce_max(__m512i x) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, x);
  return *std::max_element(lanes, lanes + 16);
}

// The OR of the eight 64-bit lanes.
ST_AVX512_INLINE uint64_t reduce_or(__m512i x) {
  const __m256i y = _mm256_or_si256(_mm512_maskz_extracti64x4_epi64(0xf, x, 0), _mm512_maskz_extracti64x4_epi64(0xf, x, 1));
  const __m128i z = _mm_or_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
  return uint64_t(_mm_cvtsi128_si64(z) | _mm_extract_epi64(z, 1));
}

// Sixteen elements (those in `in`) of the pass from e + i; returns which are candidates.
template <bool update>
ST_AVX512_INLINE __mmask16 pass_sixteen(__m512 vbeta, __m512 vhint, __mmask16 in, float* e, const float* d, uint32_t i) {
  __m512 v = _mm512_maskz_loadu_ps(in, e + i);
  if (update) {
    v = _mm512_add_ps(_mm512_mul_ps(vbeta, v), _mm512_maskz_loadu_ps(in, d + i));
    _mm512_mask_storeu_ps(e + i, in, v);
  }
  return _mm512_mask_cmp_ps_mask(in, _mm512_abs_ps(v), vhint, _CMP_NLT_UQ);
}

// The offsets i + lane of the lanes in m, in order, as sixteen 16-bit lanes.
ST_AVX512_INLINE __m256i candidates(__mmask16 m, uint32_t i) {
  const __m512i offsets = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(i)));
  return _mm512_maskz_cvtepi32_epi16(0xffff, _mm512_maskz_compress_epi32(m, offsets));
}

template <bool update>
ST_AVX512 size_t pass_avx512(float beta, float* e, const float* d, uint32_t len, float hint, Scratch& s) {
  const __m512 vbeta = _mm512_set1_ps(beta), vhint = _mm512_set1_ps(hint);
  size_t count = 0;
  // Sixteen lanes that straddle two cache lines make the pass ~1.4x slower from memory, and
  // typed arrays are often 16 bytes off a line: first the elements up to e's next line.
  uint32_t i = std::min<uint32_t>(len, uint32_t(-reinterpret_cast<uintptr_t>(e) & 63) / 4);
  if (i > 0) {
    const __mmask16 m = pass_sixteen<update>(vbeta, vhint, lanes_below(i), e, d, 0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.cand), candidates(m, 0));
    count = size_t(__builtin_popcount(m));
  }
  // The candidates are stored two sixteens late: a store to an offset that depends on the
  // values just loaded holds up the loads after it (a pass alone ran ~1.25x slower).
  __m256i late[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  size_t late_count[2] = {0, 0};
  for (; i + 16 <= len; i += 16) {
    if (update) {  // bring in the next chunk meanwhile: its pass then runs from cache
      _mm_prefetch(reinterpret_cast<const char*>(e + i + kAhead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(d + i + kAhead), _MM_HINT_T0);
    }
    const __mmask16 m = pass_sixteen<update>(vbeta, vhint, 0xffff, e, d, i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.cand + count), late[1]);
    count += late_count[1];
    late[1] = late[0];
    late_count[1] = late_count[0];
    late[0] = candidates(m, i);
    late_count[0] = size_t(__builtin_popcount(m));
  }
  for (int l = 1; l >= 0; l--) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.cand + count), late[l]);
    count += late_count[l];
  }
  if (i < len) {
    const __mmask16 m = pass_sixteen<update>(vbeta, vhint, lanes_below(len - i), e, d, i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.cand + count), candidates(m, i));
    count += size_t(__builtin_popcount(m));
  }
  return count;
}

// count_at_least and min_at_least with sixteen lanes.
ST_AVX512_INLINE size_t count_at_least_avx512(const int32_t* mag, size_t count, int32_t t) {
  const __m512i vt = _mm512_set1_epi32(t);
  size_t c = 0;
  for (size_t j = 0; j < count; j += 16)
    c += size_t(__builtin_popcount(_mm512_mask_cmpge_epi32_mask(lanes_below(count - j), _mm512_loadu_si512(mag + j), vt)));
  return c;
}

ST_AVX512_INLINE int32_t min_at_least_avx512(const int32_t* mag, size_t count, int32_t t) {
  const __m512i vt = _mm512_set1_epi32(t);
  __m512i low = _mm512_set1_epi32(INT32_MAX);
  for (size_t j = 0; j < count; j += 16) {
    const __m512i a = _mm512_loadu_si512(mag + j);
    low = _mm512_mask_min_epi32(low, _mm512_mask_cmpge_epi32_mask(lanes_below(count - j), a, vt), low, a);
  }
  return reduce_min(low);
}

// rank_value with sixteen lanes.
ST_AVX512_INLINE int32_t rank_value_avx512(const int32_t* mag, size_t count, size_t r, int32_t lo, int32_t hi) {
  const uint32_t differ = uint32_t(lo ^ hi);
  if (differ == 0) return lo;
  const int top = 31 - __builtin_clz(differ);
  int32_t t = hi & ~int32_t((2u << top) - 1);  // <= lo: all count
  for (int32_t bit = 1 << top; bit != 0; bit >>= 1) {
    const size_t c = count_at_least_avx512(mag, count, t | bit);
    if (c == r) return min_at_least_avx512(mag, count, t | bit);
    t = c > r ? t | bit : t;  // unpredictable: a select, not a branch
  }
  return t;
}

// select_top with sixteen lanes.
ST_AVX512 bool select_top_avx512(const float* e, Scratch& s, size_t count, uint32_t kc, float& hint) {
  __m512i vlo = _mm512_set1_epi32(INT32_MAX), vhi = _mm512_setzero_si512();
  for (size_t j = 0; j < count; j += 16) {
    const __mmask16 in = lanes_below(count - j);
    const __m512i offsets = widen(s.cand + j);
    const __m512i a = _mm512_and_si512(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), in, offsets, e, 4), _mm512_set1_epi32(0x7fffffff));
    _mm512_storeu_si512(s.mag + j, a);
    vlo = _mm512_mask_min_epi32(vlo, in, vlo, a);
    vhi = _mm512_mask_max_epi32(vhi, in, vhi, a);
  }
  const int32_t lo = reduce_min(vlo), hi = reduce_max(vhi);
  if (hi > 0x7f7fffff) return false;  // infinity or NaN
  const int32_t t = rank_value_avx512(s.mag, count, kc, lo, hi);
  const size_t rank = std::min<size_t>(count, 2 * size_t(kc));
  const int32_t next = rank == count ? lo : rank_value_avx512(s.mag, count, rank, lo, t);
  const size_t at_least_t = count_at_least_avx512(s.mag, count, t);
  if (at_least_t == kc) {  // the usual case (no tie at t): compress the candidates >= t
    const __m512i vt = _mm512_set1_epi32(t);
    for (size_t j = 0, m = 0; j < count; j += 16) {
      const __m512i a = _mm512_loadu_si512(s.mag + j);
      const __mmask16 take = _mm512_mask_cmpge_epi32_mask(lanes_below(count - j), a, vt);
      const __m512i offsets = widen(s.cand + j);
      store_narrow(s.picked + m, _mm512_maskz_compress_epi32(take, offsets));
      _mm512_storeu_si512(s.picked_mag + m, _mm512_maskz_compress_epi32(take, a));
      m += size_t(__builtin_popcount(take));
    }
  } else {
    pick(s, count, kc, t, at_least_t);
  }
  hint = bits_f32(uint32_t(next));
  return true;
}

// quantize_chunk with sixteen lanes for 2-bit values: the level choice in float64 as in the
// reference, the codes interleaved from the sign and level masks with pdep.
ST_AVX512 void quantize_chunk_avx512(float* e, const uint16_t* picked, const float* mag, uint32_t kc, uint32_t bits, uint8_t* out) {
  if (bits == 8) return quantize_chunk(e, picked, mag, kc, bits, out);
  uint8_t* values = out + scale_bytes(bits);
  float lo_f, hi_f;
  write_levels(mag, kc, out, lo_f, hi_f);
  const __m512d lo_d = _mm512_set1_pd(lo_f), hi_d = _mm512_set1_pd(hi_f);
  const __m512 lo_v = _mm512_set1_ps(lo_f), hi_v = _mm512_set1_ps(hi_f), zero = _mm512_setzero_ps();
  for (uint32_t j = 0; j < kc; j += 16) {
    const __mmask16 in = lanes_below(kc - j);
    const __m512i offsets = widen(picked + j);
    const __m512 v = _mm512_mask_i32gather_ps(zero, in, offsets, e, 4);
    const __m512d a0 = _mm512_maskz_cvtps_pd(0xff, _mm256_maskz_loadu_ps(__mmask8(in), mag + j));
    const __m512d a1 = _mm512_maskz_cvtps_pd(0xff, _mm256_maskz_loadu_ps(__mmask8(in >> 8), mag + j + 8));
    const __mmask16 high = in & __mmask16(_mm512_cmp_pd_mask(_mm512_sub_pd(a0, lo_d), _mm512_sub_pd(hi_d, a0), _CMP_GT_OQ) |
                                            _mm512_cmp_pd_mask(_mm512_sub_pd(a1, lo_d), _mm512_sub_pd(hi_d, a1), _CMP_GT_OQ) << 8);
    const __mmask16 negative = _mm512_mask_cmp_ps_mask(in, v, zero, _CMP_LT_OQ);
    const __m512 level = _mm512_mask_blend_ps(high, lo_v, hi_v);
    const __m512 dequant = _mm512_mask_xor_ps(level, negative, level, _mm512_set1_ps(-0.0f));
    alignas(64) float updated[16];  // stored one by one: a scatter is slower on AMD
    _mm512_store_ps(updated, _mm512_sub_ps(v, dequant));
    for (uint32_t l = 0, end = std::min(16u, kc - j); l < end; l++) e[picked[j + l]] = updated[l];
    const uint32_t codes = uint32_t(_pdep_u32(negative, 0x55555555u) | _pdep_u32(high, 0xaaaaaaaau));
    std::memcpy(values + j / 4, &codes, std::min<size_t>(4, (kc - j + 3) / 4));
  }
}

// write_offsets with sixteen gaps at a time: the low parts by pext, the places of the high
// parts' ones by a prefix sum in lanes, the ones by variable shifts.
ST_AVX512 size_t write_offsets_avx512(Scratch& s, uint32_t kc, const RecordLayout& l, uint8_t* out) {
  const uint32_t b = l.b;
  if (b > 7) return write_offsets(s, kc, l, out);
  find_gaps(s, kc);
  BitWriter low(s.low), high(s.high);
  const uint64_t fields = ((uint64_t(1) << b) - 1) * kLanes;
  const __m512i vb = _mm512_set1_epi32(int(b)), one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512(), one64 = _mm512_set1_epi64(1);
  uint32_t j = 0;
  for (; j + 16 <= kc; j += 16) {
    uint64_t g[4];
    std::memcpy(g, s.gaps + j, sizeof g);
    low.put(_pext_u64(g[0], fields) | _pext_u64(g[1], fields) << 4 * b, 8 * b);
    low.put(_pext_u64(g[2], fields) | _pext_u64(g[3], fields) << 4 * b, 8 * b);
    // Lane i: the high parts of gaps 0..i plus i + 1.
    __m512i ends = _mm512_add_epi32(_mm512_maskz_srlv_epi32(0xffff, widen(s.gaps + j), vb), one);
    ends = _mm512_add_epi32(ends, _mm512_maskz_alignr_epi32(0xffff, ends, zero, 15));
    ends = _mm512_add_epi32(ends, _mm512_maskz_alignr_epi32(0xffff, ends, zero, 14));
    ends = _mm512_add_epi32(ends, _mm512_maskz_alignr_epi32(0xffff, ends, zero, 12));
    ends = _mm512_add_epi32(ends, _mm512_maskz_alignr_epi32(0xffff, ends, zero, 8));
    const uint32_t half = uint32_t(_mm_extract_epi32(_mm512_maskz_extracti32x4_epi32(0xf, ends, 1), 3));
    const uint32_t all = uint32_t(_mm_extract_epi32(_mm512_maskz_extracti32x4_epi32(0xf, ends, 3), 3));
    if (half <= 56 && all - half <= 56) {  // a put per eight gaps
      // Lane i's one: at ends_i - 1, counted from the start of its half.
      const __m512i ones = _mm512_sub_epi32(ends, one);
      const __m512i at = _mm512_mask_sub_epi32(ones, 0xff00, ones, _mm512_set1_epi32(int(half)));
      high.put(reduce_or(_mm512_maskz_sllv_epi64(0xff, one64, _mm512_maskz_cvtepu32_epi64(0xff, _mm512_maskz_extracti64x4_epi64(0xf, at, 0)))), half);
      high.put(reduce_or(_mm512_maskz_sllv_epi64(0xff, one64, _mm512_maskz_cvtepu32_epi64(0xff, _mm512_maskz_extracti64x4_epi64(0xf, at, 1)))), all - half);
    } else {
      for (uint32_t i = 0; i < 16; i++) high.put_unary(s.gaps[j + i] >> b);
    }
  }
  put_gaps(s.gaps, j, kc, b, low, high);
  return copy_offsets(s, high, l, out);
}
#endif

}  // namespace

size_t chunk_count(const Shape& s) { return (size_t(s.n) + s.chunk - 1) / s.chunk; }

size_t records_start(const Shape& s) { return kHeaderBytes + 2 * chunk_count(s); }

size_t max_payload_size(const Shape& s) {
  const size_t full = s.n / s.chunk, rest = s.n - full * s.chunk;
  const size_t last = rest > 0 ? record_layout(uint32_t(rest), std::min<uint32_t>(s.k, uint32_t(rest)), s.bits).max_bytes : 0;
  return records_start(s) + full * record_layout(s.chunk, s.k, s.bits).max_bytes + last;
}

void write_header(const Shape& s, uint8_t* out) {
  const uint8_t header[kHeaderBytes] = {
    uint8_t(kMagic), uint8_t(kMagic >> 8), uint8_t(kMagic >> 16), uint8_t(kMagic >> 24),
    kVersion, uint8_t(s.bits), uint8_t(s.chunk), uint8_t(s.chunk >> 8), uint8_t(s.k), uint8_t(s.k >> 8), 0, 0,
    uint8_t(s.n), uint8_t(s.n >> 8), uint8_t(s.n >> 16), uint8_t(s.n >> 24)};
  std::memcpy(out, header, kHeaderBytes);
}

namespace {

// Where chunk c's record starts when every record before it has its largest size (all are full chunks).
size_t max_record_offset(const Shape& s, size_t c) { return records_start(s) + c * record_layout(s.chunk, s.k, s.bits).max_bytes; }

// Chunks [c0, c1) on a code path: Path::pass<update>(beta, e, d, len, hint, scratch) collects
// candidates as pass_portable does, Path::select is select_top, Path::quantize quantize_chunk,
// Path::write_offsets write_offsets.
// Compiled once per code path so everything it inlines is vectorized for that path.
template <class Path>
ST_INLINE void compress_range(const Shape& s, float beta, float* e, const float* delta, float* hints, uint8_t* out, size_t c0, size_t c1) {
  Scratch scratch;
  const RecordLayout full = record_layout(s.chunk, s.k, s.bits);
  uint8_t* record = out + max_record_offset(s, c0);
  for (size_t c = c0; c < c1; c++) {
    const size_t start = c * s.chunk;
    const uint32_t len = chunk_length(s, c), kc = std::min(s.k, len);
    float* ec = e + start;
    // A hint that is not a positive finite number means "no hint" (a comparison with NaN fails).
    const float hint = hints[c] > 0 && hints[c] <= kMaxFloat ? hints[c] : 0.0f;
    size_t count = Path::template pass<true>(beta, ec, delta + start, len, hint, scratch);
    if (hint == 0 && len >= 32 * size_t(kc)) {
      // No hint yet (a first call): keep only the values above an estimate of the magnitude at
      // rank 2 kc, from every 16th value, as a hint would have; if too few pass, keep all.
      const size_t fewer = Path::template pass<false>(beta, ec, nullptr, len, sampled_rank(ec, len, 2 * kc, scratch), scratch);
      count = fewer >= kc ? fewer : Path::template pass<false>(beta, ec, nullptr, len, 0.0f, scratch);
    }
    // Hint too high: look again (the chunk is in cache) with lower thresholds, then take all.
    for (float lower = hint * kRetryFactor; count < kc; lower *= kRetryFactor)
      count = Path::template pass<false>(beta, ec, nullptr, len, lower < hint * 0.01f ? 0.0f : lower, scratch);
    if (!Path::select(ec, scratch, count, kc, hints[c]))
      throw std::range_error("compress: non-finite value in e or delta in chunk " + std::to_string(c));
    const size_t bytes = Path::write_offsets(scratch, kc, len == s.chunk ? full : record_layout(len, kc, s.bits), record);
    Path::quantize(ec, scratch.picked, scratch.picked_mag, kc, s.bits, record);
    record += bytes;
    // The directory entries go out kLengthBatch at a time: the other thread writes its blocks'
    // entries into the same cache lines, and a store per chunk moved a line between cores each time.
    const size_t batched = (c - c0) % kLengthBatch;
    scratch.lengths[2 * batched] = uint8_t(bytes);
    scratch.lengths[2 * batched + 1] = uint8_t(bytes >> 8);
    if (batched + 1 == kLengthBatch || c + 1 == c1) std::memcpy(out + kHeaderBytes + 2 * (c - batched), scratch.lengths, 2 * (batched + 1));
  }
}

struct PortablePath {
  static size_t write_offsets(Scratch& s, uint32_t kc, const RecordLayout& l, uint8_t* out) { return swarmtrain::write_offsets(s, kc, l, out); }
  template <bool update>
  static size_t pass(float beta, float* e, const float* d, uint32_t len, float hint, Scratch& s) { return pass_portable<update>(beta, e, d, len, hint, s.cand); }
  static bool select(const float* e, Scratch& s, size_t count, uint32_t kc, float& hint) { return select_top(e, s, count, kc, hint); }
  static void quantize(float* e, const uint16_t* picked, const float* mag, uint32_t kc, uint32_t bits, uint8_t* out) { quantize_chunk(e, picked, mag, kc, bits, out); }
};

void compress_portable(const Shape& s, float beta, float* e, const float* delta, float* hints, uint8_t* out, size_t c0, size_t c1) {
  compress_range<PortablePath>(s, beta, e, delta, hints, out, c0, c1);
}

#if defined(__x86_64__)
struct Avx2Path : PortablePath {
  template <bool update>
  static size_t pass(float beta, float* e, const float* d, uint32_t len, float hint, Scratch& s) { return pass_avx2<update>(beta, e, d, len, hint, s.cand); }
};

__attribute__((target("avx2,fma")))
void compress_avx2(const Shape& s, float beta, float* e, const float* delta, float* hints, uint8_t* out, size_t c0, size_t c1) {
  compress_range<Avx2Path>(s, beta, e, delta, hints, out, c0, c1);
}

struct Avx512Path {
  static size_t write_offsets(Scratch& s, uint32_t kc, const RecordLayout& l, uint8_t* out) { return write_offsets_avx512(s, kc, l, out); }
  template <bool update>
  static size_t pass(float beta, float* e, const float* d, uint32_t len, float hint, Scratch& s) { return pass_avx512<update>(beta, e, d, len, hint, s); }
  static bool select(const float* e, Scratch& s, size_t count, uint32_t kc, float& hint) { return select_top_avx512(e, s, count, kc, hint); }
  static void quantize(float* e, const uint16_t* picked, const float* mag, uint32_t kc, uint32_t bits, uint8_t* out) { quantize_chunk_avx512(e, picked, mag, kc, bits, out); }
};

ST_AVX512
void compress_avx512(const Shape& s, float beta, float* e, const float* delta, float* hints, uint8_t* out, size_t c0, size_t c1) {
  compress_range<Avx512Path>(s, beta, e, delta, hints, out, c0, c1);
}
#endif

}  // namespace

void compress_chunks(const Shape& s, float beta, float* e, const float* delta, float* hints, uint8_t* out, size_t c0, size_t c1) {
#if defined(__x86_64__)
  if (simd_level() == Simd::kAvx512) return compress_avx512(s, beta, e, delta, hints, out, c0, c1);
  if (use_avx2()) return compress_avx2(s, beta, e, delta, hints, out, c0, c1);
#endif
  compress_portable(s, beta, e, delta, hints, out, c0, c1);
}

size_t pack_records(const Shape& s, uint8_t* out, size_t block) {
  size_t to = records_start(s);
  for (size_t c0 = 0, chunks = chunk_count(s); c0 < chunks; c0 += block) {
    size_t bytes = 0;
    for (size_t c = c0, c1 = std::min(chunks, c0 + block); c < c1; c++) bytes += out[kHeaderBytes + 2 * c] | out[kHeaderBytes + 2 * c + 1] << 8;
    const size_t from = max_record_offset(s, c0);
    if (from != to) std::memmove(out + to, out + from, bytes);
    to += bytes;
  }
  return to;
}

Payload read_payload(const uint8_t* p, size_t size) {
  if (size < kHeaderBytes) throw std::range_error("invalid payload: " + std::to_string(size) + " bytes is shorter than the header");
  auto u16 = [&](size_t at) { return uint32_t(p[at]) | uint32_t(p[at + 1]) << 8; };
  const uint32_t magic = u16(0) | u16(2) << 16;
  if (magic != kMagic) throw std::range_error("invalid payload: bad magic");
  if (p[4] != kVersion) throw std::range_error("invalid payload: unsupported version " + std::to_string(p[4]));
  const Shape s{u16(12) | u16(14) << 16, u16(6), u16(8), p[5]};
  if (s.bits != 2 && s.bits != 8) throw std::range_error("invalid payload: value bits " + std::to_string(s.bits));
  if (s.chunk < 1 || s.chunk > kMaxChunk) throw std::range_error("invalid payload: chunk " + std::to_string(s.chunk));
  if (s.k < 1 || s.k > s.chunk) throw std::range_error("invalid payload: k " + std::to_string(s.k) + " for chunk " + std::to_string(s.chunk));
  if (u16(10) != 0) throw std::range_error("invalid payload: reserved field is not zero");
  const size_t start = records_start(s), bound = max_payload_size(s);
  if (size < start) throw std::range_error("invalid payload: " + std::to_string(size) + " bytes is shorter than the header and directory (" + std::to_string(start) + " bytes)");
  if (size > bound) throw std::range_error("invalid payload: " + std::to_string(size) + " bytes, more than the " + std::to_string(bound) + " its shape allows");
  // The directory fits in the payload, so its size bounds this allocation.
  const size_t chunks = chunk_count(s);
  Payload pl{s, record_layout(s.chunk, s.k, s.bits), std::vector<size_t>(chunks + 1)};
  size_t at = start;
  for (size_t c = 0; c < chunks; c++) {
    const uint32_t len = chunk_length(s, c);
    const RecordLayout l = len == s.chunk ? pl.full : record_layout(len, std::min(s.k, len), s.bits);
    const size_t bytes = u16(kHeaderBytes + 2 * c);
    if (bytes < l.min_bytes || bytes > l.max_bytes)
      throw std::range_error("invalid payload: chunk " + std::to_string(c) + " has a record of " + std::to_string(bytes) + " bytes, outside " + std::to_string(l.min_bytes) + ".." + std::to_string(l.max_bytes));
    pl.at[c] = at;
    at += bytes;
  }
  if (at != size) throw std::range_error("invalid payload: its records take " + std::to_string(at - start) + " bytes, the payload has " + std::to_string(size - start) + " after the directory");
  pl.at[chunks] = at;
  return pl;
}

namespace {

[[noreturn]] void bad_chunk(size_t c, const char* what) {
  throw std::range_error("invalid payload: chunk " + std::to_string(c) + " " + what);
}

// Up to 8 bytes from p (little-endian, as the fields), the missing ones zero. (Not through a
// memcpy of `count` bytes: a word loaded from bytes just stored one by one stalls.)
ST_INLINE uint64_t load_bytes(const uint8_t* p, size_t count) {
  uint64_t x = 0;
  if (count >= 8) {
    std::memcpy(&x, p, 8);
  } else {
    for (size_t i = 0; i < count; i++) x |= uint64_t(p[i]) << (8 * i);
  }
  return x;
}

// Reads fields of up to 56 bits from a byte field, LSB first, never past its end.
class BitReader {
 public:
  BitReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  ST_INLINE uint64_t take(uint32_t bits) {
    if (n_ < bits) {  // refill to at least 56 bits, or to the end
      const size_t count = (63 - n_) / 8;
      acc_ |= load_bytes(p_, std::min<size_t>(size_t(end_ - p_), 8)) << n_;  // bits past count bytes: read again later
      p_ += std::min<size_t>(count, size_t(end_ - p_));
      n_ += uint32_t(count) * 8;
    }
    const uint64_t v = acc_ & ((uint64_t(1) << bits) - 1);
    acc_ >>= bits;
    n_ -= bits;
    return v;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  uint64_t acc_ = 0;
  uint32_t n_ = 0;  // bits of acc_ not yet taken (past the field's end, zeros)
};

// A record's offsets' code: where its fields are.
struct OffsetCode {
  uint32_t len, kc, b;
  const uint8_t* low;
  const uint8_t* high;
  size_t high_bytes;
};

ST_INLINE OffsetCode offset_code(const Payload& pl, const uint8_t* p, size_t c) {
  const uint32_t len = chunk_length(pl.s, c), kc = std::min(pl.s.k, len);
  const RecordLayout l = len == pl.s.chunk ? pl.full : record_layout(len, kc, pl.s.bits);
  const uint8_t* rec = p + pl.at[c];
  return {len, kc, l.b, rec + l.low, rec + l.high, pl.at[c + 1] - pl.at[c] - l.high};  // >= 1: read_payload checked min_bytes
}

// The sum of the fields of b bits in `bytes` bytes from p (zero bits past the last field): per
// word and bit of a field, how many fields have it set.
ST_INLINE uint64_t sum_fields(const uint8_t* p, size_t bytes, uint32_t b) {
  if (b == 0) return 0;
  uint64_t every = 0;  // a one every b bits from bit 0
  for (uint32_t t = 0; t < 64; t += b) every |= uint64_t(1) << t;
  uint64_t sum = 0;
  for (size_t i = 0, phase = 0; i < bytes; i += 8, phase = (phase + 64) % b) {  // bit 0 of this word is bit `phase` of a field
    const uint64_t w = load_bytes(p + i, bytes - i);
    // at: the first bit of the word that is bit `bit` of a field
    for (uint32_t bit = 0, at = phase == 0 ? 0 : b - uint32_t(phase); bit < b; bit++, at = at + 1 == b ? 0 : at + 1)
      sum += uint64_t(__builtin_popcountll(w & every << at)) << bit;
  }
  return sum;
}

// Checks chunk c's offsets without decoding them one by one: the high parts hold exactly kc ones
// and end in the byte of the last, the low parts' padding is zero, and the last offset (the one
// that all the gaps add up to) is inside the chunk. The work is bounded by the record's length.
void check_offsets(const Payload& pl, const uint8_t* p, size_t c) {
  const OffsetCode f = offset_code(pl, p, c);
  size_t ones = 0, last = 0;
  for (size_t i = 0; i < f.high_bytes; i += 8) {
    const uint64_t w = load_bytes(f.high + i, f.high_bytes - i);
    ones += size_t(__builtin_popcountll(w));
    if (w != 0) last = i * 8 + 63 - size_t(__builtin_clzll(w));
  }
  if (ones < f.kc) bad_chunk(c, "ends inside its offsets");
  if (ones > f.kc) bad_chunk(c, "has non-zero padding bits");
  if (last / 8 + 1 != f.high_bytes) bad_chunk(c, "has bytes after its offsets");
  const size_t low_bits = size_t(f.kc) * f.b;
  if (low_bits % 8 != 0 && (f.low[low_bits / 8] >> (low_bits % 8)) != 0) bad_chunk(c, "has non-zero padding bits");
  // The kc ones end kc high parts: the zeros among the first last + 1 bits are their sum.
  const uint64_t final_offset = (uint64_t(last + 1 - f.kc) << f.b) + sum_fields(f.low, size_t(f.high - f.low), f.b) + f.kc - 1;
  if (final_offset >= f.len) bad_chunk(c, "has an offset beyond its length");
}

// Calls fn(j, offset in the chunk) for the kc offsets of chunk c's checked record, in order,
// through qs (kMaxChunk + 4 entries).
template <typename Fn>
ST_INLINE void for_each_offset(const Payload& pl, const uint8_t* p, size_t c, uint16_t* qs, Fn fn) {
  const OffsetCode f = offset_code(pl, p, c);
  // The high parts: the zeros before each one.
  uint32_t j = 0;
  size_t from = 0;
  for (size_t i = 0; i < f.high_bytes; i += 8) {
    for (uint64_t w = load_bytes(f.high + i, f.high_bytes - i); w != 0; w &= w - 1) {
      const size_t one = i * 8 + size_t(__builtin_ctzll(w));
      qs[j++] = uint16_t(one - from);
      from = one + 1;
    }
  }
  // Four gaps at a time as the 16-bit lanes of a word (each below 4096), and the offsets as their
  // running sums, plus one per offset before (a multiplication sums the lanes).
  BitReader low(f.low, f.high);
  uint64_t next = 0;  // the offset after the last one, in every lane
  j = 0;
  for (; j + 4 <= f.kc; j += 4) {
    uint64_t q;
    std::memcpy(&q, qs + j, 8);
    const uint64_t o = ((q << f.b | unpack4(low.take(4 * f.b), f.b)) * kLanes + 0x0003000200010000) + next * kLanes;
    fn(j, uint32_t(o & 0xffff));
    fn(j + 1, uint32_t(o >> 16 & 0xffff));
    fn(j + 2, uint32_t(o >> 32 & 0xffff));
    fn(j + 3, uint32_t(o >> 48));
    next = (o >> 48) + 1;
  }
  for (; j < f.kc; j++) {
    const uint64_t o = next + (uint64_t(qs[j]) << f.b | low.take(f.b));
    fn(j, uint32_t(o));
    next = o + 1;
  }
}

// Calls fn(offset in the chunk, value) for each value of a checked chunk record, in order.
template <typename Fn>
void for_each_value(const Payload& pl, const uint8_t* p, size_t c, uint16_t* qs, Fn fn) {
  const uint8_t* rec = p + pl.at[c];
  const uint8_t* values = rec + scale_bytes(pl.s.bits);
  if (pl.s.bits == 2) {
    const uint32_t levels[2] = {f32_bits(f16_to_f32(uint16_t(rec[0] | rec[1] << 8))), f32_bits(f16_to_f32(uint16_t(rec[2] | rec[3] << 8)))};
    for_each_offset(pl, p, c, qs, [&](uint32_t j, uint32_t o) {
      const uint32_t code = (values[j >> 2] >> ((j & 3) * 2)) & 3;
      fn(o, bits_f32(levels[code >> 1] ^ (code & 1) << 31));  // the sign by a bit (random: a branch mispredicts)
    });
  } else {
    const float step = f16_to_f32(uint16_t(rec[0] | rec[1] << 8));
    for_each_offset(pl, p, c, qs, [&](uint32_t j, uint32_t o) { fn(o, float(int8_t(values[j])) * step); });
  }
}

}  // namespace

void check_chunks(const Payload& pl, const uint8_t* p, size_t c0, size_t c1) {
  const Shape& s = pl.s;
  for (size_t c = c0; c < c1; c++) {
    const uint8_t* rec = p + pl.at[c];
    const uint32_t kc = std::min(s.k, chunk_length(s, c));
    const uint32_t scale0 = rec[0] | rec[1] << 8;
    if (scale0 > kMaxF16) bad_chunk(c, "has a negative or non-finite scale");
    if (s.bits == 2) {
      const uint32_t scale1 = rec[2] | rec[3] << 8;
      if (scale1 > kMaxF16) bad_chunk(c, "has a negative or non-finite scale");
      if (scale0 > scale1) bad_chunk(c, "has its low magnitude above the high one");  // same order as the values
    }
    const uint8_t* values = rec + scale_bytes(s.bits);
    if (s.bits == 2 && kc % 4 != 0 && (values[value_bytes(kc, 2) - 1] >> ((kc % 4) * 2)) != 0) bad_chunk(c, "has non-zero padding bits");
    if (s.bits == 8 && std::memchr(values, 0x80, kc) != nullptr) bad_chunk(c, "has the value -128");
    check_offsets(pl, p, c);
  }
}

void accumulate_chunks(const Payload& pl, const uint8_t* p, float* dst, float w, size_t c0, size_t c1) {
  uint16_t qs[kMaxChunk + 4];
  for (size_t c = c0; c < c1; c++) {
    float* d = dst + c * pl.s.chunk;
    for_each_value(pl, p, c, qs, [&](uint32_t o, float v) { const float scaled = w * v; d[o] += scaled; });
  }
}

double payload_sum_squares(const Payload& pl, const uint8_t* p) {
  uint16_t qs[kMaxChunk + 4];
  double sum = 0;
  for (size_t c = 0, chunks = chunk_count(pl.s); c < chunks; c++)
    for_each_value(pl, p, c, qs, [&](uint32_t, float v) { sum += double(v) * v; });
  return sum;
}

}  // namespace swarmtrain
