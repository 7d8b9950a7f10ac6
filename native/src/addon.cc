#include "common.h"
#include "map.h"
#include "program.h"

namespace lbt {

Napi::Function InitObject(Napi::Env env);
Napi::Function InitRingBuffer(Napi::Env env);
void InitLinkFunctions(Napi::Env env, Napi::Object exports);

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// setErrorClass(BpfError): errors thrown by the addon are instances of it.
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) Throw(info.Env(), EINVAL, "setErrorClass", "class", "expects a constructor");
  Data(info.Env()).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  InstallLibbpfLogCapture();
  Napi::Function mapClass = NativeMap::Init(env);
  Napi::Function progClass = NativeProgram::Init(env);
  data->mapClass = Napi::Persistent(mapClass);
  data->progClass = Napi::Persistent(progClass);
  exports.Set("NativeObject", InitObject(env));
  exports.Set("NativeMap", mapClass);
  exports.Set("NativeProgram", progClass);
  exports.Set("NativeRingBuffer", InitRingBuffer(env));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  InitLinkFunctions(env, exports);
  return exports;
}

}  // namespace lbt

using lbt::InitAddon;
NODE_API_MODULE(libbpf_ts, InitAddon)
