#pragma once

#include <napi.h>

namespace lbt {

// The NativeRingBuffer class (ringbuf.cc), for addon.cc to export.
Napi::Function InitRingBuffer(Napi::Env env);

}  // namespace lbt
