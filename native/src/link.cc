// Module-level calls that act on interfaces or bpffs rather than on a handle:
// detaching and querying tc/XDP attachments, opening pinned objects.
#include "link.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "args.h"
#include "bpf_fd.h"
#include "errors.h"
#include "map.h"
#include "netns.h"
#include "program.h"

namespace lbt {

namespace {

bpf_tc_attach_point AttachPointArg(const Napi::CallbackInfo& info, size_t i, const char* call) {
  std::string point = StringArg(info, i, "attach point");
  if (point == "ingress") return BPF_TC_INGRESS;
  if (point == "egress") return BPF_TC_EGRESS;
  Throw(info.Env(), EINVAL, call, point, "attach point must be 'ingress' or 'egress'");
}

uint32_t XdpModeFlags(Napi::Env env, const std::string& mode, const char* call) {
  if (mode == "native") return XDP_FLAGS_DRV_MODE;
  if (mode == "generic") return XDP_FLAGS_SKB_MODE;
  if (mode == "auto" || mode.empty()) return 0;
  Throw(env, EINVAL, call, mode, "XDP mode must be 'native', 'generic' or 'auto'");
}

// A tc call's answer rc: true on success, false where there is nothing (no
// clsact qdisc answers EINVAL, no filter at that handle ENOENT); other errors throw.
bool TcFound(Napi::Env env, int rc, const char* call, int ifindex) {
  if (rc == -ENOENT || rc == -EINVAL) return false;
  if (rc < 0) Throw(env, -rc, call, std::to_string(ifindex));
  return true;
}

// tcDetach and tcQuery: fn(hook, opts) on the filter that (target, point,
// {handle, priority, netns}) names; TcFound of its answer.
template <typename Fn>
bool OnTcFilter(const Napi::CallbackInfo& info, const char* call, Fn fn) {
  Napi::Env env = info.Env();
  bpf_tc_attach_point point = AttachPointArg(info, 1, call);
  Napi::Object opts = OptsArg(info, 2);
  NetnsInterface iface(env, info[0], OptString(opts, "netns"), call);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = iface.ifindex(), .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, tc, .handle = OptU32(opts, "handle", 1), .priority = OptU32(opts, "priority", 1));
  return TcFound(env, fn(&hook, &tc), call, iface.ifindex());
}

}  // namespace

// tcDetach(target, point, {handle, priority, netns}) -> boolean (false: nothing there)
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  bool detached =
      OnTcFilter(info, "bpf_tc_detach", [](bpf_tc_hook* hook, bpf_tc_opts* tc) { return bpf_tc_detach(hook, tc); });
  return Napi::Boolean::New(info.Env(), detached);
}

// tcQuery(target, point, {handle, priority, netns}) -> program id or null
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  uint32_t id = 0;
  bool found = OnTcFilter(info, "bpf_tc_query", [&id](bpf_tc_hook* hook, bpf_tc_opts* tc) {
    int rc = bpf_tc_query(hook, tc);
    id = tc->prog_id;
    return rc;
  });
  return found ? Napi::Number::New(info.Env(), id) : info.Env().Null();
}

// tcHookDestroy(target, {netns}): removes the clsact qdisc with every filter on it.
Napi::Value TcHookDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_tc_hook_destroy";
  Napi::Object opts = OptsArg(info, 1);
  NetnsInterface iface(env, info[0], OptString(opts, "netns"), call);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = iface.ifindex(),
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  return Napi::Boolean::New(env, TcFound(env, bpf_tc_hook_destroy(&hook), call, iface.ifindex()));
}

// xdpQuery(target, {mode, netns}) -> program id or null
Napi::Value XdpQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_xdp_query";
  Napi::Object opts = OptsArg(info, 1);
  uint32_t flags = XdpModeFlags(env, OptString(opts, "mode"), call);
  NetnsInterface iface(env, info[0], OptString(opts, "netns"), call);
  uint32_t id = 0;
  int rc = bpf_xdp_query_id(iface.ifindex(), flags, &id);
  if (rc < 0) Throw(env, -rc, call, std::to_string(iface.ifindex()));
  return id ? Napi::Number::New(env, id) : env.Null();
}

// xdpDetach(target, {mode, netns, expectedProgId}) -> boolean
// With expectedProgId, only that program is removed (XDP_FLAGS_REPLACE), so a
// program someone else attached meanwhile is left alone.
Napi::Value XdpDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_xdp_detach";
  Napi::Object opts = OptsArg(info, 1);
  uint32_t flags = XdpModeFlags(env, OptString(opts, "mode"), call);
  uint32_t expected = OptU32(opts, "expectedProgId", 0);
  NetnsInterface iface(env, info[0], OptString(opts, "netns"), call);
  uint32_t id = 0;
  if (bpf_xdp_query_id(iface.ifindex(), flags, &id) == 0 && id == 0) return Napi::Boolean::New(env, false);
  if (flags == 0) {
    // Detach from the mode the program is attached in: the kernel refuses a
    // detach aimed at the other mode while one is attached.
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(iface.ifindex(), 0, &q) == 0) {
      if (q.attach_mode == XDP_ATTACHED_SKB) flags = XDP_FLAGS_SKB_MODE;
      if (q.attach_mode == XDP_ATTACHED_DRV) flags = XDP_FLAGS_DRV_MODE;
      if (q.attach_mode == XDP_ATTACHED_HW) flags = XDP_FLAGS_HW_MODE;
    }
  }
  int oldFd = -1;
  if (expected) {
    if (id != expected) return Napi::Boolean::New(env, false);
    oldFd = bpf_prog_get_fd_by_id(expected);
    if (oldFd < 0) return Napi::Boolean::New(env, false);
    flags |= XDP_FLAGS_REPLACE;
  }
  LIBBPF_OPTS(bpf_xdp_attach_opts, xo, .old_prog_fd = oldFd);
  int rc = bpf_xdp_detach(iface.ifindex(), flags, expected ? &xo : nullptr);
  if (oldFd >= 0) close(oldFd);
  if (rc < 0) Throw(env, -rc, call, std::to_string(iface.ifindex()));
  return Napi::Boolean::New(env, true);
}

// ifindex(name, netns?) -> number
Napi::Value Ifindex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  return Napi::Number::New(env, NetnsInterface(env, info[0], netns, "if_nametoindex").ifindex());
}

// openPinned(path) -> {kind: "map" | "program", handle}
Napi::Value OpenPinned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int e = errno;
    std::string detail;
    if (e == ENOENT) detail = "nothing is pinned at " + path;
    if (e == EINVAL || e == EPERM) detail = path + " is not a BPF object on a bpffs mount, or no privilege";
    Throw(env, e, "bpf_obj_get", path, detail);
  }
  Napi::Object out = Napi::Object::New(env);
  // A pinned object's fd names its kind: anon_inode:bpf-map or anon_inode:bpf-prog.
  char link[64] = {0};
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(self.c_str(), link, sizeof link - 1);
  std::string label = path.substr(path.rfind('/') + 1);
  if (n > 0 && strstr(link, "bpf-prog")) {
    out.Set("kind", "program");
    out.Set("handle", NativeProgram::FromFd(env, fd, label));
    return out;
  }
  if (n <= 0 || !strstr(link, "bpf-map")) {
    close(fd);
    Throw(env, EINVAL, "bpf_obj_get", path, "the object pinned at " + path + " is neither a map nor a program");
  }
  out.Set("kind", "map");
  out.Set("handle", NativeMap::FromFd(env, fd, label));
  return out;
}

// ifname(index, netns?) -> string | null
Napi::Value Ifname(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t idx = U32Arg(info, 0, "ifindex");
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  NetnsScope scope(env, netns, "if_indextoname");
  char name[IF_NAMESIZE] = {0};
  if (!if_indextoname(idx, name)) return env.Null();
  return Napi::String::New(env, name);
}

// progInfo(id) -> {id, name, type, tag} | null (null: no such program)
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = U32Arg(info, 0, "program id");
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) {
    if (errno == ENOENT) return env.Null();
    Throw(env, errno, "bpf_prog_get_fd_by_id", std::to_string(id));
  }
  struct bpf_prog_info pi = BpfObjInfo<struct bpf_prog_info>(env, fd, std::to_string(id), "");
  close(fd);
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  o.Set("tag", tag);
  return o;
}

// numPossibleCpus() -> number
Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), PossibleCpus()); }

}  // namespace lbt
