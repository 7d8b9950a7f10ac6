#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>

#include "addon_data.h"
#include "bpf_fd.h"

namespace lbt {

// A per-CPU map holds one value per possible CPU for each key.
bool IsPerCpu(uint32_t mapType);
uint32_t PossibleCpus();

class NativeMap : public BpfFdHandle<NativeMap> {
 public:
  static constexpr const char* kKind = "map";
  static constexpr Napi::FunctionReference AddonData::*kClass = &AddonData::mapClass;
  static constexpr bool kPinHintsBpffs = true;

  static Napi::Function Init(Napi::Env env);
  explicit NativeMap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  Napi::Value Mmap(const Napi::CallbackInfo& info);

  const uint8_t* KeyArg(const Napi::CallbackInfo& info, size_t i, const char* call);
  // updateBatch and deleteBatch off the event loop: op(fd, &n) acts on count
  // entries and sets n to how many it did, which the promise resolves with;
  // explain(errno, n) says what a failure means ("" for the usual text).
  Napi::Value QueueCountedBatch(Napi::Env env, const char* call, uint32_t count,
                                std::function<int(int fd, uint32_t* n)> op,
                                std::function<std::string(int e, uint32_t n)> explain);

  uint32_t type_ = 0, keySize_ = 0, valueSize_ = 0, maxEntries_ = 0, flags_ = 0, id_ = 0;
  uint32_t valueBufSize_ = 0;  // valueSize, or round_up(valueSize, 8) * possible CPUs
  std::string scratch_;
};

}  // namespace lbt
