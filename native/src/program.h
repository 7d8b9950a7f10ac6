#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "addon_data.h"
#include "bpf_fd.h"

namespace lbt {

class NativeProgram : public BpfFdHandle<NativeProgram> {
 public:
  static constexpr const char* kKind = "program";
  static constexpr Napi::FunctionReference AddonData::*kClass = &AddonData::progClass;
  static constexpr bool kPinHintsBpffs = false;

  static Napi::Function Init(Napi::Env env);
  explicit NativeProgram(const Napi::CallbackInfo& info);

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value AttachTc(const Napi::CallbackInfo& info);
  Napi::Value AttachXdp(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);

  uint32_t type_ = 0, id_ = 0;
};

}  // namespace lbt
