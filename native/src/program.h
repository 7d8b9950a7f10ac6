#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace lbt {

class NativeProgram : public Napi::ObjectWrap<NativeProgram> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object FromFd(Napi::Env env, int fd, const std::string& name);
  explicit NativeProgram(const Napi::CallbackInfo& info);
  ~NativeProgram() override;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value AttachTc(const Napi::CallbackInfo& info);
  Napi::Value AttachXdp(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  void CheckOpen(Napi::Env env, const char* call);

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, id_ = 0;
};

}  // namespace lbt
