// Shared declarations of the libbpf-ts addon: per-env data, error construction,
// argument helpers and the promise-returning job used for slow calls.
#pragma once

#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <functional>
#include <memory>
#include <string>

namespace lbt {

struct AddonData {
  Napi::FunctionReference errorClass;  // BpfError from lib/errors.ts
  Napi::FunctionReference mapClass;    // NativeMap
  Napi::FunctionReference progClass;   // NativeProgram
};

AddonData& Data(Napi::Env env);

// Errors ---------------------------------------------------------------------
// err is a positive errno. The message reads "call(subject): CODE: detail".
Napi::Error MakeError(Napi::Env env, int err, const std::string& call, const std::string& subject,
                      const std::string& detail = "");
[[noreturn]] void Throw(Napi::Env env, int err, const std::string& call, const std::string& subject,
                        const std::string& detail = "");
std::string ErrnoName(int err);
std::string Describe(int err, const std::string& call);

// libbpf's own diagnostics (verifier log, relocation failures) are captured
// rather than printed, and attached to the error of the call that made them.
void InstallLibbpfLogCapture();
void ClearLibbpfLog();
std::string TakeLibbpfLog();

// Arguments --------------------------------------------------------------------
std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what);
uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Object OptsArg(const Napi::CallbackInfo& info, size_t i);
std::string OptString(Napi::Object opts, const char* key);
uint32_t OptU32(Napi::Object opts, const char* key, uint32_t dflt);
bool OptBool(Napi::Object opts, const char* key, bool dflt);

// Network namespaces -------------------------------------------------------------
// Switches the calling thread into the namespace at `path` (a no-op for "")
// for the lifetime of the scope. Netlink sockets opened meanwhile (tc, XDP,
// if_nametoindex) live in that namespace.
class NetnsScope {
 public:
  NetnsScope(Napi::Env env, const std::string& path, const std::string& call);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int orig_ = -1;
};

// Resolves an interface given by name or index; must run inside the NetnsScope.
int ResolveIfindex(Napi::Env env, Napi::Value target, const std::string& call, const std::string& netns);

// Jobs off the event loop ------------------------------------------------------
// `run` executes on a libuv worker thread and returns 0 or a negative errno;
// `result` builds the resolved value on the JS thread.
struct JobSpec {
  std::string call;
  std::string subject;
  std::function<int(std::string& detail)> run;
  std::function<Napi::Value(Napi::Env)> result;
};
Napi::Promise QueueJob(Napi::Env env, JobSpec spec);

bool IsPerCpu(uint32_t mapType);
uint32_t PossibleCpus();

}  // namespace lbt
