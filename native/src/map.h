#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace lbt {

// A per-CPU map holds one value per possible CPU for each key.
bool IsPerCpu(uint32_t mapType);
uint32_t PossibleCpus();

class NativeMap : public Napi::ObjectWrap<NativeMap> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Takes ownership of fd.
  static Napi::Object FromFd(Napi::Env env, int fd, const std::string& name);
  explicit NativeMap(const Napi::CallbackInfo& info);
  ~NativeMap() override;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env, const char* call);
  const uint8_t* KeyArg(const Napi::CallbackInfo& info, size_t i, const char* call);
  int DupFd(Napi::Env env, const char* call);

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, keySize_ = 0, valueSize_ = 0, maxEntries_ = 0, flags_ = 0, id_ = 0;
  uint32_t valueBufSize_ = 0;  // valueSize, or round_up(valueSize, 8) * possible CPUs
  std::string scratch_;
};

}  // namespace lbt
