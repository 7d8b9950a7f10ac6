#include "common.h"

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <mutex>

namespace lbt {

namespace {
std::mutex logMutex;
std::string logText;
constexpr size_t kMaxLogBytes = 256 * 1024;

int CaptureLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  bool debug = getenv("LIBBPF_TS_DEBUG") != nullptr;
  if (level == LIBBPF_DEBUG && !debug) return 0;
  // libbpf prints a whole verifier log in one call: size the buffer to it.
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return n;
  std::string line(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(line.data(), line.size(), fmt, args);
  line.resize(n);
  if (debug) fputs(line.c_str(), stderr);
  std::lock_guard<std::mutex> lock(logMutex);
  logText += line;
  // The verifier's reason for a rejection is at the end: keep the tail.
  if (logText.size() > kMaxLogBytes) logText.erase(0, logText.size() - kMaxLogBytes);
  return n;
}
}  // namespace

void InstallLibbpfLogCapture() { libbpf_set_print(CaptureLibbpf); }

void ClearLibbpfLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  logText.clear();
}

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  std::string out;
  out.swap(logText);
  return out;
}

std::string ErrnoName(int err) {
  switch (err) {
    case 524:
      return "ENOTSUPP";  // kernel-internal, not in libc
    default:
      break;
  }
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

std::string Describe(int err, const std::string& call) {
  bool isMapUpdate = call.find("update") != std::string::npos;
  switch (err) {
    case EPERM:
      return "operation not permitted: run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN";
    case E2BIG:
      return isMapUpdate ? "map is full" : "argument too large";
    case ENOENT:
      return "no such entry";
    case EEXIST:
      return "already exists";
    case ENODEV:
      return "no such device";
    case EBADF:
      return "handle is closed";
    case 524:
      return "not supported by this kernel for this map or program type";
    default:
      return strerror(err);
  }
}

Napi::Error MakeError(Napi::Env env, int err, const std::string& call, const std::string& subject,
                      const std::string& detail) {
  if (err < 0) err = -err;
  std::string code = ErrnoName(err);
  std::string message = call + "(" + subject + "): " + code + ": " + (detail.empty() ? Describe(err, call) : detail);
  AddonData& data = Data(env);
  Napi::Object obj;
  if (!data.errorClass.IsEmpty()) {
    obj = data.errorClass.New({Napi::String::New(env, message)});
  } else {
    obj = Napi::Error::New(env, message).Value();
  }
  obj.Set("errno", Napi::Number::New(env, err));
  obj.Set("code", Napi::String::New(env, code));
  obj.Set("call", Napi::String::New(env, call));
  obj.Set("subject", Napi::String::New(env, subject));
  return Napi::Error(env, obj);
}

void Throw(Napi::Env env, int err, const std::string& call, const std::string& subject, const std::string& detail) {
  throw MakeError(env, err, call, subject, detail);
}

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

bool IsPerCpu(uint32_t t) {
  return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
         t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

uint32_t PossibleCpus() {
  static int n = libbpf_num_possible_cpus();
  return n > 0 ? static_cast<uint32_t>(n) : 1;
}

// A promise-returning job. The spec's closures own whatever buffers they need,
// so nothing here touches JS values off the main thread.
namespace {
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, JobSpec spec)
      : Napi::AsyncWorker(env, "libbpf-ts"), deferred_(Napi::Promise::Deferred::New(env)), spec_(std::move(spec)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { err_ = spec_.run(detail_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(MakeError(env, -err_, spec_.call, spec_.subject, detail_).Value());
      return;
    }
    try {
      deferred_.Resolve(spec_.result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  JobSpec spec_;
  int err_ = 0;
  std::string detail_;
};
}  // namespace

Napi::Promise QueueJob(Napi::Env env, JobSpec spec) {
  Job* job = new Job(env, std::move(spec));
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

}  // namespace lbt
