#pragma once

#include <napi.h>

namespace lbt {

// The NativeObject class (object.cc), for addon.cc to export.
Napi::Function InitObject(Napi::Env env);

}  // namespace lbt
