// Module-level calls that act on interfaces or bpffs rather than on a handle
// (link.cc); addon.cc exports them.
#pragma once

#include <napi.h>

namespace lbt {

Napi::Value TcDetach(const Napi::CallbackInfo& info);
Napi::Value TcQuery(const Napi::CallbackInfo& info);
Napi::Value TcHookDestroy(const Napi::CallbackInfo& info);
Napi::Value XdpQuery(const Napi::CallbackInfo& info);
Napi::Value XdpDetach(const Napi::CallbackInfo& info);
Napi::Value Ifindex(const Napi::CallbackInfo& info);
Napi::Value OpenPinned(const Napi::CallbackInfo& info);
Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info);
Napi::Value Ifname(const Napi::CallbackInfo& info);
Napi::Value ProgInfo(const Napi::CallbackInfo& info);

}  // namespace lbt
