// Reading a call's arguments. A missing or mistyped argument is a BpfError
// with EINVAL; an option that is missing or mistyped takes its default.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace lbt {

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what);
uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Object OptsArg(const Napi::CallbackInfo& info, size_t i);
std::string OptString(Napi::Object opts, const char* key);
uint32_t OptU32(Napi::Object opts, const char* key, uint32_t dflt);
bool OptBool(Napi::Object opts, const char* key, bool dflt);

}  // namespace lbt
