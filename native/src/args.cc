#include "args.h"

#include <cerrno>

#include "errors.h"

namespace lbt {

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    Throw(info.Env(), EINVAL, "libbpf-ts", what, std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    Throw(info.Env(), EINVAL, "libbpf-ts", what, std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != static_cast<double>(static_cast<uint64_t>(v)))
    Throw(info.Env(), EINVAL, "libbpf-ts", what, std::string(what) + " must be an integer from 0 to 2^32-1");
  return static_cast<uint32_t>(v);
}

Napi::Object OptsArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsObject()) return info[i].As<Napi::Object>();
  return Napi::Object::New(info.Env());
}

std::string OptString(Napi::Object opts, const char* key) {
  Napi::Value v = opts.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

uint32_t OptU32(Napi::Object opts, const char* key, uint32_t dflt) {
  Napi::Value v = opts.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : dflt;
}

bool OptBool(Napi::Object opts, const char* key, bool dflt) {
  Napi::Value v = opts.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt;
}

}  // namespace lbt
