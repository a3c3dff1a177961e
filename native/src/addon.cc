// swarmtrain's native kernels. Each kernel has a JavaScript reference in native/reference.ts.
#include <napi.h>

namespace {

// axpy(dst, src, weight): dst += weight * src, in place.
Napi::Value Axpy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "axpy(dst: Float32Array, src: Float32Array, weight: number)");
  auto dst = info[0].As<Napi::TypedArray>();
  auto src = info[1].As<Napi::TypedArray>();
  if (dst.TypedArrayType() != napi_float32_array || src.TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "axpy: dst and src must be Float32Array");
  if (dst.ElementLength() != src.ElementLength())
    throw Napi::RangeError::New(env, "axpy: dst and src must have the same length");
  float* d = dst.As<Napi::Float32Array>().Data();
  const float* s = src.As<Napi::Float32Array>().Data();
  const float w = info[2].As<Napi::Number>().FloatValue();
  for (size_t i = 0, n = dst.ElementLength(); i < n; i++) d[i] += w * s[i];
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("axpy", Napi::Function::New(env, Axpy));
  return exports;
}

}  // namespace

NODE_API_MODULE(swarmtrain_native, Init)
