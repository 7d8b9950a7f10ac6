// The addon's entry point and the one list of everything it exports.
#include <napi.h>
#include <node_api.h>

#include <cerrno>

#include "addon_data.h"
#include "errors.h"
#include "link.h"
#include "lock.h"
#include "map.h"
#include "map_single.h"
#include "object.h"
#include "program.h"
#include "ringbuf.h"

namespace lbt {

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// setErrorClass(BpfError): errors thrown by the addon are instances of it.
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) Throw(info.Env(), EINVAL, "setErrorClass", "class", "expects a constructor");
  Data(info.Env()).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

// A function over a plain N-API callback, without node-addon-api's wrapping.
static Napi::Function PlainFunction(Napi::Env env, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  return Napi::Function(env, fn);
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
  // Single-key map calls (map_single.cc)
  exports.Set("mapLookup", PlainFunction(env, "mapLookup", MapLookup));
  exports.Set("mapUpdate", PlainFunction(env, "mapUpdate", MapUpdate));
  exports.Set("mapDelete", PlainFunction(env, "mapDelete", MapDelete));
  // Interfaces, tc and XDP attachments, bpffs, program ids (link.cc)
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach));
  exports.Set("tcQuery", Napi::Function::New(env, TcQuery));
  exports.Set("tcHookDestroy", Napi::Function::New(env, TcHookDestroy));
  exports.Set("xdpQuery", Napi::Function::New(env, XdpQuery));
  exports.Set("xdpDetach", Napi::Function::New(env, XdpDetach));
  exports.Set("ifindex", Napi::Function::New(env, Ifindex));
  exports.Set("openPinned", Napi::Function::New(env, OpenPinned));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("ifname", Napi::Function::New(env, Ifname));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  // File locks (lock.cc)
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile));
  return exports;
}

}  // namespace lbt

using lbt::InitAddon;
NODE_API_MODULE(libbpf_ts, InitAddon)
