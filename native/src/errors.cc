#include "errors.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "addon_data.h"

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
    case kENOTSUPP:
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
    case kENOTSUPP:
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

}  // namespace lbt
