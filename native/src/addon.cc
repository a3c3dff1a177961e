// N-API bindings of swarmtrain's kernels (kernels.h). Each binding checks its JavaScript
// arguments (TypeError for a wrong type, RangeError for a wrong length or value, the same rules
// as the reference in native/*.ts), then runs the kernel on the typed arrays' memory in place.
// The *Async variants run the kernel on the libuv pool, split over two threads; they keep the
// arrays alive until the promise settles and report argument errors as rejections.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "kernels.h"

namespace swarmtrain {
namespace {

constexpr double kMaxNumber = 1.7976931348623157e308;

// A prepared call: the arguments are checked, `run(two_threads)` does the work and returns a
// number (or nothing, when returns_number is false).
struct Call {
  std::function<double(bool)> run;
  bool returns_number = false;
  std::vector<Napi::Value> keep;  // arrays the work touches
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, Call& call) : info_(info), fn_(fn), call_(call) {}

  [[noreturn]] void type_error(const std::string& what) const { throw Napi::TypeError::New(info_.Env(), std::string(fn_) + ": " + what); }
  [[noreturn]] void range_error(const std::string& what) const { throw Napi::RangeError::New(info_.Env(), std::string(fn_) + ": " + what); }

  template <typename T>
  T* array(size_t i, const char* name, napi_typedarray_type type, const char* type_name, size_t& length) {
    if (!info_[i].IsTypedArray() || info_[i].As<Napi::TypedArray>().TypedArrayType() != type)
      type_error(std::string(name) + " must be a " + type_name);
    auto a = info_[i].As<Napi::TypedArrayOf<T>>();
    call_.keep.push_back(a);
    length = a.ElementLength();
    return a.Data();
  }
  float* f32(size_t i, const char* name, size_t& n) { return array<float>(i, name, napi_float32_array, "Float32Array", n); }
  uint16_t* u16(size_t i, const char* name, size_t& n) { return array<uint16_t>(i, name, napi_uint16_array, "Uint16Array", n); }
  int8_t* i8(size_t i, const char* name, size_t& n) { return array<int8_t>(i, name, napi_int8_array, "Int8Array", n); }
  uint8_t* u8(size_t i, const char* name, size_t& n) { return array<uint8_t>(i, name, napi_uint8_array, "Uint8Array", n); }

  Napi::Object object(size_t i, const char* name) const {
    if (!info_[i].IsObject()) type_error(std::string(name) + " must be an object");
    return info_[i].As<Napi::Object>();
  }

  // A number in [min, max] (or (min, max] when min_open).
  double number(Napi::Value v, const std::string& name, double min, double max, bool min_open = false) const {
    if (!v.IsNumber()) range_error(name + " must be a number, got " + v.ToString().Utf8Value());
    const double x = v.As<Napi::Number>().DoubleValue();
    if (!(min_open ? x > min : x >= min) || !(x <= max)) range_error(name + " must be a number in " + (min_open ? "(" : "[") + fmt(min) + ", " + fmt(max) + "], got " + fmt(x));
    return x;
  }
  double number(size_t i, const std::string& name, double min, double max) const { return number(info_[i], name, min, max); }
  double integer(Napi::Value v, const std::string& name, double min, double max) const {
    const double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!(x >= min && x <= max && std::floor(x) == x)) range_error(name + " must be an integer from " + fmt(min) + " to " + fmt(max) + ", got " + v.ToString().Utf8Value());
    return x;
  }

  void same_length(size_t a, size_t b, const char* what) const {
    if (a != b) range_error(std::string(what) + " must have the same length");
  }

 private:
  static std::string fmt(double x) {
    if (std::fabs(x) == kMaxNumber) return x < 0 ? "-Number.MAX_VALUE" : "Number.MAX_VALUE";
    std::string s = std::to_string(x);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }

  const Napi::CallbackInfo& info_;
  const char* fn_;
  Call& call_;
};

// Kernel errors (std::range_error, std::invalid_argument) as JavaScript errors.
Napi::Error to_js(Napi::Env env, const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::range_error& e) {
    return Napi::RangeError::New(env, e.what());
  } catch (const std::invalid_argument& e) {
    return Napi::TypeError::New(env, e.what());
  } catch (const std::exception& e) {
    return Napi::Error::New(env, e.what());
  }
}

class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, Call call) : Napi::AsyncWorker(env, "swarmtrain:native"), deferred_(Napi::Promise::Deferred::New(env)), call_(std::move(call)) {
    for (const auto& v : call_.keep) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
    call_.keep.clear();
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = call_.run(true);
    } catch (...) {
      error_ = std::current_exception();
      SetError("failed");  // replaced by the typed error in OnError
    }
  }
  // A job can finish while the process exits (a second Ctrl-C): the environment then refuses to
  // run JavaScript and node-addon-api throws; nobody is left to tell, and an exception escaping
  // a completion callback would abort the process instead of letting it exit.
  void OnOK() override {
    try {
      Napi::Env env = Env();
      deferred_.Resolve(call_.returns_number ? Napi::Value(Napi::Number::New(env, result_)) : env.Undefined());
    } catch (const Napi::Error&) {}
  }
  void OnError(const Napi::Error&) override {
    try {
      deferred_.Reject(to_js(Env(), error_).Value());
    } catch (const Napi::Error&) {}
  }

 private:
  Napi::Promise::Deferred deferred_;
  Call call_;
  std::vector<Napi::ObjectReference> refs_;
  std::exception_ptr error_;
  double result_ = 0;
};

using Prepare = Call (*)(const Napi::CallbackInfo&);

template <Prepare prepare>
Napi::Value Sync(const Napi::CallbackInfo& info) {
  Call call = prepare(info);
  double result;
  try {
    result = call.run(false);
  } catch (...) {
    throw to_js(info.Env(), std::current_exception());
  }
  return call.returns_number ? Napi::Value(Napi::Number::New(info.Env(), result)) : info.Env().Undefined();
}

template <Prepare prepare>
Napi::Value Async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Call call;
  try {
    call = prepare(info);
  } catch (const Napi::Error& e) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
  auto* job = new Job(env, std::move(call));
  Napi::Promise promise = job->promise();
  job->Queue();
  return promise;
}

// Async calls split their work over two threads from this many elements on; below, starting a
// thread (tens of microseconds) would cost more than it saves. Work is shared in blocks.
constexpr size_t kSplitElements = size_t(1) << 17;
constexpr size_t kBlockElements = size_t(1) << 16;

// Runs fn(begin, end) over [0, units): in blocks on two threads in async calls over at least
// kSplitElements elements, in one call otherwise. Returns the block size used (units for one call).
template <typename Fn>
size_t over_units(size_t units, size_t block, size_t elements, bool two_threads, Fn fn) {
  if (!two_threads || elements < kSplitElements) {
    fn(size_t(0), units);
    return units;
  }
  run_two_threads(units, block, fn);
  return block;
}

template <typename Fn>
void over_elements(size_t n, bool two_threads, Fn fn) { over_units(n, kBlockElements, n, two_threads, fn); }

// Chunks per block when a chunked kernel is shared between two threads (~64K elements).
size_t chunk_block(uint32_t chunk) { return std::max<size_t>(1, kBlockElements / chunk); }

// ---- dense kernels ----

Call prepare_axpy(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "axpy", call);
  size_t n, m;
  float* dst = a.f32(0, "dst", n);
  const float* src = a.f32(1, "src", m);
  a.same_length(n, m, "dst and src");
  const float w = float(a.number(2, "weight", -kMaxNumber, kMaxNumber));
  call.run = [=](bool two) { over_elements(n, two, [&](size_t b, size_t e) { axpy(dst, src, w, b, e); }); return 0.0; };
  return call;
}

Call prepare_sum_squares(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "sumSquares", call);
  size_t n;
  const float* x = a.f32(0, "x", n);
  call.returns_number = true;
  call.run = [=](bool two) {
    if (!two || n < kSplitElements) return sum_squares(x, 0, n);
    // Partial sums per block, added in block order: the same result whichever thread ran what.
    std::vector<double> parts((n + kBlockElements - 1) / kBlockElements);
    run_two_threads(n, kBlockElements, [&](size_t b, size_t e) { parts[b / kBlockElements] = sum_squares(x, b, e); });
    double sum = 0;
    for (double p : parts) sum += p;
    return sum;
  };
  return call;
}

Call prepare_adamw(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "adamw", call);
  size_t n, ng, nm, nv;
  float* param = a.f32(0, "param", n);
  const float* grad = a.f32(1, "grad", ng);
  float* m = a.f32(2, "m", nm);
  float* v = a.f32(3, "v", nv);
  if (ng != n || nm != n || nv != n) a.range_error("param, grad, m and v must have the same length");
  Napi::Object o = a.object(4, "options");
  AdamW opt{};
  opt.lr = a.number(o.Get("lr"), "adamw: lr", 0, kMaxNumber);
  opt.beta1 = a.number(o.Get("beta1"), "adamw: beta1", 0, 0.9999999999);
  opt.beta2 = a.number(o.Get("beta2"), "adamw: beta2", 0, 0.9999999999);
  opt.eps = a.number(o.Get("eps"), "adamw: eps", 0, kMaxNumber, true);
  opt.weight_decay = a.number(o.Get("weightDecay"), "adamw: weightDecay", 0, kMaxNumber);
  opt.grad_scale = a.number(o.Get("gradScale"), "adamw: gradScale", -kMaxNumber, kMaxNumber);
  const double step = a.integer(o.Get("step"), "adamw: step", 1, 9007199254740991.0);
  opt.c1 = 1 - std::pow(opt.beta1, step);
  opt.c2 = 1 - std::pow(opt.beta2, step);
  call.run = [=](bool two) { over_elements(n, two, [&](size_t b, size_t e) { adamw(opt, param, grad, m, v, b, e); }); return 0.0; };
  return call;
}

Call prepare_outer_step(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "outerStep", call);
  size_t n, ng, nb = 0;
  float* param = a.f32(0, "param", n);
  const float* grad = a.f32(1, "grad", ng);
  Napi::Object o = a.object(3, "options");
  OuterStep opt{};
  opt.lr = a.number(o.Get("lr"), "outerStep: lr", 0, kMaxNumber);
  opt.momentum = a.number(o.Get("momentum"), "outerStep: momentum", 0, 1);
  opt.nesterov = o.Get("nesterov").ToBoolean();
  float* buf = nullptr;
  if (opt.momentum > 0) {
    if (info[2].IsNull() || info[2].IsUndefined()) a.type_error("momentum needs a buffer");
    buf = a.f32(2, "momentumBuffer", nb);
    a.same_length(n, nb, "arrays");
  }
  a.same_length(n, ng, "arrays");
  call.run = [=](bool two) { over_elements(n, two, [&](size_t b, size_t e) { outer_step(opt, param, grad, buf, b, e); }); return 0.0; };
  return call;
}

// ---- compression ----

Call prepare_compress(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "compress", call);
  size_t n, nd, nh, size;
  float* e = a.f32(0, "e", n);
  const float* delta = a.f32(1, "delta", nd);
  float* hints = a.f32(2, "hints", nh);
  uint8_t* out = a.u8(3, "out", size);
  Napi::Object o = a.object(4, "options");
  if (n > 0xffffffffu) a.range_error("n must be at most 4294967295");
  const uint32_t chunk = uint32_t(a.integer(o.Get("chunk"), "chunk", 1, kMaxChunk));
  const uint32_t k = uint32_t(a.integer(o.Get("k"), "k", 1, chunk));
  const uint32_t bits = uint32_t(a.integer(o.Get("bits"), "bits", 2, 8));
  if (bits != 2 && bits != 8) a.range_error("bits must be 2 or 8, got " + std::to_string(bits));
  const float beta = float(a.number(o.Get("beta"), "beta", 0, 1));
  a.same_length(n, nd, "e and delta");
  const Shape s{uint32_t(n), chunk, k, bits};
  const size_t chunks = chunk_count(s), needed = max_payload_size(s);
  if (nh != chunks) a.range_error("hints must have one entry per chunk (" + std::to_string(chunks) + "), got " + std::to_string(nh));
  if (size < needed) a.range_error("out has " + std::to_string(size) + " bytes, the payload may need " + std::to_string(needed));
  call.returns_number = true;
  call.run = [=](bool two) {
    write_header(s, out);
    const size_t block = over_units(chunks, chunk_block(chunk), n, two, [&](size_t c0, size_t c1) { compress_chunks(s, beta, e, delta, hints, out, c0, c1); });
    return double(pack_records(s, out, block));
  };
  return call;
}

Call prepare_decode_accumulate(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "decodeAccumulate", call);
  size_t n, size;
  float* dst = a.f32(0, "dst", n);
  const uint8_t* p = a.u8(1, "payload", size);
  const double weight = a.number(2, "weight", -kMaxNumber, kMaxNumber);
  call.run = [=](bool two) {
    const Payload pl = read_payload(p, size);
    const size_t chunks = chunk_count(pl.s), block = chunk_block(pl.s.chunk);
    if (n != pl.s.n) throw std::range_error("decodeAccumulate: dst has " + std::to_string(n) + " elements, the payload " + std::to_string(pl.s.n));
    // The whole payload is checked before dst is touched.
    over_units(chunks, block, n, two, [&](size_t c0, size_t c1) { check_chunks(pl, p, c0, c1); });
    const float w = float(weight);
    over_units(chunks, block, n, two, [&](size_t c0, size_t c1) { accumulate_chunks(pl, p, dst, w, c0, c1); });
    return 0.0;
  };
  return call;
}

Call prepare_payload_norm(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "payloadNorm", call);
  size_t size;
  const uint8_t* p = a.u8(0, "payload", size);
  call.returns_number = true;
  call.run = [=](bool) {
    const Payload pl = read_payload(p, size);
    check_chunks(pl, p, 0, chunk_count(pl.s));
    return std::sqrt(payload_sum_squares(pl, p));
  };
  return call;
}

// ---- activation codecs ----

template <typename Src, typename Dst, void (*kernel)(const Src*, Dst*, size_t)>
Call prepare_convert(const Napi::CallbackInfo& info, const char* fn, Src* (Args::*src_arg)(size_t, const char*, size_t&), Dst* (Args::*dst_arg)(size_t, const char*, size_t&)) {
  Call call;
  Args a(info, fn, call);
  size_t n, m;
  const Src* src = (a.*src_arg)(0, "src", n);
  Dst* dst = (a.*dst_arg)(1, "dst", m);
  if (n != m) a.range_error("source and destination must have the same length (" + std::to_string(n) + " != " + std::to_string(m) + ")");
  call.run = [=](bool) { kernel(src, dst, n); return 0.0; };
  return call;
}

Call prepare_f32_to_f16(const Napi::CallbackInfo& info) { return prepare_convert<float, uint16_t, f32_to_f16_array>(info, "f32ToF16", &Args::f32, &Args::u16); }
Call prepare_f16_to_f32(const Napi::CallbackInfo& info) { return prepare_convert<uint16_t, float, f16_to_f32_array>(info, "f16ToF32", &Args::u16, &Args::f32); }
Call prepare_f32_to_bf16(const Napi::CallbackInfo& info) { return prepare_convert<float, uint16_t, f32_to_bf16_array>(info, "f32ToBf16", &Args::f32, &Args::u16); }
Call prepare_bf16_to_f32(const Napi::CallbackInfo& info) { return prepare_convert<uint16_t, float, bf16_to_f32_array>(info, "bf16ToF32", &Args::u16, &Args::f32); }

size_t check_rows(Args& a, size_t n, size_t m, size_t scales, const Napi::CallbackInfo& info, size_t row_index) {
  if (n != m) a.range_error("source and destination must have the same length (" + std::to_string(n) + " != " + std::to_string(m) + ")");
  const size_t row_length = size_t(a.integer(info[row_index], "rowLength", 1, 9007199254740991.0));
  if (n % row_length != 0) a.range_error("length " + std::to_string(n) + " is not a multiple of rowLength " + std::to_string(row_length));
  if (scales != n / row_length) a.range_error("scales must have one entry per row (" + std::to_string(n / row_length) + "), got " + std::to_string(scales));
  return row_length;
}

Call prepare_f32_to_int8(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "f32ToInt8", call);
  size_t n, m, ns;
  const float* src = a.f32(0, "src", n);
  int8_t* dst = a.i8(1, "dst", m);
  float* scales = a.f32(2, "scales", ns);
  const size_t row_length = check_rows(a, n, m, ns, info, 3);
  call.run = [=](bool) { f32_to_int8_rows(src, dst, scales, n / row_length, row_length); return 0.0; };
  return call;
}

Call prepare_int8_to_f32(const Napi::CallbackInfo& info) {
  Call call;
  Args a(info, "int8ToF32", call);
  size_t n, m, ns;
  const int8_t* src = a.i8(0, "src", n);
  const float* scales = a.f32(1, "scales", ns);
  float* dst = a.f32(2, "dst", m);
  const size_t row_length = check_rows(a, n, m, ns, info, 3);
  call.run = [=](bool) { int8_to_f32_rows(src, scales, dst, n / row_length, row_length); return 0.0; };
  return call;
}

// ---- dispatch control ----

const char* const kSimdNames[] = {"portable", "avx2", "avx512"};  // in Simd order

Napi::Value SimdLevel(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kSimdNames[int(simd_level())]); }

// setSimd(true): the best path the CPU has; false: portable; a path name: the best up to it.
Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  Simd at_most = Simd::kAvx512;
  if (info[0].IsBoolean()) {
    at_most = info[0].As<Napi::Boolean>().Value() ? Simd::kAvx512 : Simd::kPortable;
  } else {
    const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    const auto* found = std::find(std::begin(kSimdNames), std::end(kSimdNames), name);
    if (found == std::end(kSimdNames)) throw Napi::TypeError::New(info.Env(), "setSimd(enabled: boolean | 'avx512' | 'avx2' | 'portable')");
    at_most = Simd(found - std::begin(kSimdNames));
  }
  set_simd(at_most);
  return SimdLevel(info);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) { exports.Set(name, Napi::Function::New(env, fn, name)); };
  add("axpy", Sync<prepare_axpy>);
  add("sumSquares", Sync<prepare_sum_squares>);
  add("adamw", Sync<prepare_adamw>);
  add("outerStep", Sync<prepare_outer_step>);
  add("compress", Sync<prepare_compress>);
  add("decodeAccumulate", Sync<prepare_decode_accumulate>);
  add("payloadNorm", Sync<prepare_payload_norm>);
  add("f32ToF16", Sync<prepare_f32_to_f16>);
  add("f16ToF32", Sync<prepare_f16_to_f32>);
  add("f32ToBf16", Sync<prepare_f32_to_bf16>);
  add("bf16ToF32", Sync<prepare_bf16_to_f32>);
  add("f32ToInt8", Sync<prepare_f32_to_int8>);
  add("int8ToF32", Sync<prepare_int8_to_f32>);
  add("axpyAsync", Async<prepare_axpy>);
  add("sumSquaresAsync", Async<prepare_sum_squares>);
  add("adamwAsync", Async<prepare_adamw>);
  add("outerStepAsync", Async<prepare_outer_step>);
  add("compressAsync", Async<prepare_compress>);
  add("decodeAccumulateAsync", Async<prepare_decode_accumulate>);
  add("simdLevel", SimdLevel);
  add("setSimd", SetSimd);
  return exports;
}

}  // namespace
}  // namespace swarmtrain

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return swarmtrain::Init(env, exports); }

NODE_API_MODULE(swarmtrain_native, InitModule)
