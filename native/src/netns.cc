#include "netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"

namespace lbt {

NetnsScope::NetnsScope(Napi::Env env, const std::string& path, const std::string& call) {
  if (path.empty()) return;
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) Throw(env, errno, call, path, "cannot open network namespace " + path + ": " + strerror(errno));
  orig_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig_ < 0) {
    int e = errno;
    close(target);
    Throw(env, e, call, path, "cannot open this thread's network namespace");
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int e = errno;
    close(target);
    close(orig_);
    orig_ = -1;
    Throw(env, e, call, path, std::string("cannot enter network namespace ") + path + ": " + strerror(e));
  }
  close(target);
}

NetnsScope::~NetnsScope() {
  if (orig_ < 0) return;
  // Returning to the original namespace cannot reasonably fail: we held it open.
  (void)setns(orig_, CLONE_NEWNET);
  close(orig_);
}

namespace {

// Runs inside the namespace the interface is looked up in.
int ResolveIfindex(Napi::Env env, Napi::Value target, const std::string& call, const std::string& netns) {
  if (target.IsNumber()) {
    int idx = target.As<Napi::Number>().Int32Value();
    if (idx <= 0) Throw(env, EINVAL, call, std::to_string(idx), "interface index must be a positive integer");
    return idx;
  }
  if (!target.IsString()) Throw(env, EINVAL, call, "interface", "interface must be a name or an index");
  std::string name = target.As<Napi::String>().Utf8Value();
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) {
    std::string where = netns.empty() ? "" : " in network namespace " + netns;
    Throw(env, ENODEV, call, name, "no interface named '" + name + "'" + where);
  }
  return static_cast<int>(idx);
}

}  // namespace

NetnsInterface::NetnsInterface(Napi::Env env, Napi::Value target, const std::string& netns, const std::string& call)
    : scope_(env, netns, call), ifindex_(ResolveIfindex(env, target, call, netns)) {}

}  // namespace lbt
