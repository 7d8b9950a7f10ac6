// Per-env data of the addon, set up by addon.cc when the addon is loaded.
#pragma once

#include <napi.h>

namespace lbt {

struct AddonData {
  Napi::FunctionReference errorClass;  // BpfError from lib/errors.ts
  Napi::FunctionReference mapClass;    // NativeMap
  Napi::FunctionReference progClass;   // NativeProgram
};

AddonData& Data(Napi::Env env);

}  // namespace lbt
