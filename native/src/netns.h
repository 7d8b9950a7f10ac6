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

// Resolves an interface given by name or index; must run inside the NetnsScope.
int ResolveIfindex(Napi::Env env, Napi::Value target, const std::string& call, const std::string& netns);

}  // namespace lbt
