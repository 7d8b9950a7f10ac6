// Errors thrown by the addon: errno names and descriptions, the BpfError
// construction, and the capture of libbpf's own diagnostics.
#pragma once

#include <napi.h>

#include <string>

namespace lbt {

// The kernel's ENOTSUPP: internal to the kernel (include/linux/errno.h) and so
// absent from libc, yet BPF calls return it for what a map or program type lacks.
constexpr int kENOTSUPP = 524;

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

}  // namespace lbt
