// What the handles over one BPF fd (NativeMap, NativeProgram) share: reading
// the fd's info, taking the fd over, pin(path), close() and fd().
#pragma once

#include <bpf/bpf.h>
#include <fcntl.h>
#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "errors.h"

namespace lbt {

// bpf_obj_get_info_by_fd into an Info (bpf_map_info, bpf_prog_info). When the
// kernel refuses, fd is closed and the error thrown with subject and detail.
template <typename Info>
Info BpfObjInfo(Napi::Env env, int fd, const std::string& subject, const std::string& detail) {
  Info out;
  memset(&out, 0, sizeof out);
  uint32_t len = sizeof out;
  if (bpf_obj_get_info_by_fd(fd, &out, &len) != 0) {
    int e = errno;
    close(fd);
    Throw(env, e, "bpf_obj_get_info_by_fd", subject, detail);
  }
  return out;
}

// A JS class that owns one BPF fd. T says what it holds:
//   kKind: "map" or "program", for messages;
//   kClass: its constructor's slot in AddonData, for FromFd;
//   kPinHintsBpffs: whether an EPERM from pin() says a bpffs mount may be missing.
template <typename T>
class BpfFdHandle : public Napi::ObjectWrap<T> {
 public:
  // new T(fd, name): takes ownership of fd.
  static Napi::Object FromFd(Napi::Env env, int fd, const std::string& name) {
    return (Data(env).*T::kClass).New({Napi::Number::New(env, fd), Napi::String::New(env, name)});
  }
  ~BpfFdHandle() override {
    if (fd_ >= 0) close(fd_);
  }

 protected:
  using Method = typename Napi::ObjectWrap<T>::PropertyDescriptor;

  explicit BpfFdHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {}

  // The class with T's own methods, then pin, close and fd.
  static Napi::Function Define(Napi::Env env, const char* name, std::vector<Method> methods) {
    using Callback = typename Napi::ObjectWrap<T>::InstanceMethodCallback;
    methods.push_back(T::InstanceMethod("pin", static_cast<Callback>(&BpfFdHandle::Pin)));
    methods.push_back(T::InstanceMethod("close", static_cast<Callback>(&BpfFdHandle::Close)));
    methods.push_back(T::InstanceMethod("fd", static_cast<Callback>(&BpfFdHandle::Fd)));
    return T::DefineClass(env, name, methods);
  }

  // The constructor's (fd, label): takes ownership of fd, named label, and
  // returns its info; an fd that is not a BPF kKind is closed and refused.
  template <typename Info>
  Info Adopt(const Napi::CallbackInfo& info) {
    int fd = static_cast<int>(U32Arg(info, 0, "fd"));
    std::string label = StringArg(info, 1, "label");
    Info out = BpfObjInfo<Info>(info.Env(), fd, label, std::string("not a BPF ") + T::kKind);
    fd_ = fd;
    name_ = label;
    return out;
  }

  void CheckOpen(Napi::Env env, const char* call) {
    if (fd_ < 0) Throw(env, EBADF, call, name_, std::string(T::kKind) + " handle is closed");
  }

  // A descriptor of its own for a job, which closes it when done.
  int DupFd(Napi::Env env, const char* call) {
    CheckOpen(env, call);
    int fd = fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) Throw(env, errno, call, name_);
    return fd;
  }

  int fd_ = -1;
  std::string name_;

 private:
  Napi::Value Pin(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env, "bpf_obj_pin");
    std::string path = StringArg(info, 0, "path");
    if (bpf_obj_pin(fd_, path.c_str()) != 0) {
      int e = errno;
      std::string detail;
      if (e == EEXIST) detail = "something is already pinned at " + path;
      if (e == ENOENT) detail = "the folder of " + path + " does not exist";
      if (e == EPERM && T::kPinHintsBpffs)
        detail = path + " is not on a bpffs mount (mount -t bpf bpf /sys/fs/bpf), or no privilege";
      Throw(env, e, "bpf_obj_pin", name_, detail);
    }
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    return info.Env().Undefined();
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env(), "fd");
    return Napi::Number::New(info.Env(), fd_);
  }
};

}  // namespace lbt
