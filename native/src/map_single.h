// Single-key map calls in plain N-API (map_single.cc says why); addon.cc
// exports them with napi_create_function, not Napi::Function::New.
#pragma once

#include <node_api.h>

namespace lbt {

napi_value MapLookup(napi_env env, napi_callback_info cbinfo);
napi_value MapUpdate(napi_env env, napi_callback_info cbinfo);
napi_value MapDelete(napi_env env, napi_callback_info cbinfo);

}  // namespace lbt
