// Network namespaces and the interfaces in them.
#pragma once

#include <napi.h>

#include <string>

namespace lbt {

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

// An interface given by name or index (target), in the namespace at `netns`
// ("": this one): the calling thread is in that namespace, and the index
// valid, for the lifetime of the object.
class NetnsInterface {
 public:
  NetnsInterface(Napi::Env env, Napi::Value target, const std::string& netns, const std::string& call);
  int ifindex() const { return ifindex_; }

 private:
  NetnsScope scope_;
  int ifindex_;
};

}  // namespace lbt
