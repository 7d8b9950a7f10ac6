// Single-key map operations in plain N-API. These are the calls a control
// plane makes in loops; node-addon-api's layers (CallbackInfo, ObjectWrap
// unwrapping, exception translation) cost about as much as the syscall
// itself, so they are bypassed here. The TypeScript caller has already
// checked that the handle is open and that key and value have the map's sizes:
// the kernel reads exactly key_size and value_size bytes from these buffers.
#include "map_single.h"

#include <bpf/bpf.h>
#include <napi.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace lbt {

namespace {

void* BufferData(napi_env env, napi_value v) {
  void* data = nullptr;
  size_t len = 0;
  napi_get_buffer_info(env, v, &data, &len);
  return data;
}

std::string StringValue(napi_env env, napi_value v) {
  char buf[256];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok) return "map";
  return std::string(buf, len);
}

napi_value Bool(napi_env env, bool b) {
  napi_value out;
  napi_get_boolean(env, b, &out);
  return out;
}

napi_value ThrowErrno(napi_env env, int err, const char* call, napi_value name, const std::string& detail = "") {
  napi_throw(env, MakeError(Napi::Env(env), err, call, StringValue(env, name), detail).Value());
  return nullptr;
}

// A call's N arguments, the first of them the map's fd.
template <size_t N>
struct MapArgs {
  napi_value argv[N];
  int32_t fd = -1;
  MapArgs(napi_env env, napi_callback_info cbinfo) {
    size_t argc = N;
    napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr);
    napi_get_value_int32(env, argv[0], &fd);
  }
};

// The answer of a lookup or delete that returned rc: whether the key was there.
napi_value KeyFound(napi_env env, int rc, const char* call, napi_value name) {
  if (rc == 0) return Bool(env, true);
  if (errno == ENOENT) return Bool(env, false);
  return ThrowErrno(env, errno, call, name);
}

}  // namespace

// mapLookup(fd, key, out, name) -> boolean
napi_value MapLookup(napi_env env, napi_callback_info cbinfo) {
  MapArgs<4> a(env, cbinfo);
  int rc = bpf_map_lookup_elem(a.fd, BufferData(env, a.argv[1]), BufferData(env, a.argv[2]));
  return KeyFound(env, rc, "bpf_map_lookup_elem", a.argv[3]);
}

// mapUpdate(fd, key, value, flags, name) -> undefined
napi_value MapUpdate(napi_env env, napi_callback_info cbinfo) {
  MapArgs<5> a(env, cbinfo);
  int64_t flags = 0;
  napi_get_value_int64(env, a.argv[3], &flags);
  if (bpf_map_update_elem(a.fd, BufferData(env, a.argv[1]), BufferData(env, a.argv[2]), flags) == 0) return nullptr;
  int e = errno;
  std::string detail;
  if (e == EEXIST) detail = "key already exists (BPF_NOEXIST)";
  if (e == ENOENT) detail = "key does not exist (BPF_EXIST)";
  if (e == E2BIG) detail = "map is full";
  return ThrowErrno(env, e, "bpf_map_update_elem", a.argv[4], detail);
}

// mapDelete(fd, key, name) -> boolean (false: the key was not there)
napi_value MapDelete(napi_env env, napi_callback_info cbinfo) {
  MapArgs<3> a(env, cbinfo);
  return KeyFound(env, bpf_map_delete_elem(a.fd, BufferData(env, a.argv[1])), "bpf_map_delete_elem", a.argv[2]);
}

}  // namespace lbt
