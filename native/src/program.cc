#include "program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "errors.h"
#include "job.h"
#include "netns.h"

namespace lbt {

Napi::Function NativeProgram::Init(Napi::Env env) {
  return Define(env, "NativeProgram",
                {
                    InstanceMethod("info", &NativeProgram::Info),
                    InstanceMethod("attachTc", &NativeProgram::AttachTc),
                    InstanceMethod("attachXdp", &NativeProgram::AttachXdp),
                    InstanceMethod("testRun", &NativeProgram::TestRun),
                });
}

// new NativeProgram(fd, label): takes ownership of fd and reads the program's info.
NativeProgram::NativeProgram(const Napi::CallbackInfo& info) : BpfFdHandle<NativeProgram>(info) {
  // The kernel truncates names to 15 characters; the caller's full name (label) stays.
  struct bpf_prog_info pi = Adopt<struct bpf_prog_info>(info);
  type_ = pi.type;
  id_ = pi.id;
}

Napi::Value NativeProgram::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env, "info");
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", name_);
  o.Set("type", type_);
  o.Set("id", id_);
  return o;
}

// attachTc(target, "ingress" | "egress", {handle, priority, netns, replace})
// Creates the clsact qdisc when missing and adds a direct-action filter.
Napi::Value NativeProgram::AttachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_tc_attach";
  CheckOpen(env, call);
  std::string point = StringArg(info, 1, "attach point");
  if (point != "ingress" && point != "egress")
    Throw(env, EINVAL, call, name_, "attach point must be 'ingress' or 'egress', not '" + point + "'");
  Napi::Object opts = OptsArg(info, 2);
  NetnsInterface iface(env, info[0], OptString(opts, "netns"), call);

  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = iface.ifindex(), .attach_point = BPF_TC_INGRESS);
  int rc = bpf_tc_hook_create(&hook);
  if (rc < 0 && rc != -EEXIST) Throw(env, -rc, "bpf_tc_hook_create", name_, "cannot create the clsact qdisc");
  hook.attach_point = point == "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  LIBBPF_OPTS(bpf_tc_opts, tc, .prog_fd = fd_,
              .flags = OptBool(opts, "replace", false) ? uint32_t{BPF_TC_F_REPLACE} : 0u,
              .handle = OptU32(opts, "handle", 1), .priority = OptU32(opts, "priority", 1));
  rc = bpf_tc_attach(&hook, &tc);
  if (rc < 0) {
    std::string detail;
    if (rc == -EEXIST) detail = "a filter already sits at this handle and priority; pass replace: true to replace it";
    Throw(env, -rc, call, name_, detail);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ifindex", iface.ifindex());
  out.Set("attachPoint", point);
  out.Set("handle", tc.handle);
  out.Set("priority", tc.priority);
  out.Set("progId", tc.prog_id);
  return out;
}

// attachXdp(target, "native" | "generic" | "auto", {netns, replace})
Napi::Value NativeProgram::AttachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_xdp_attach";
  CheckOpen(env, call);
  std::string mode = StringArg(info, 1, "mode");
  uint32_t flags;
  if (mode == "native")
    flags = XDP_FLAGS_DRV_MODE;
  else if (mode == "generic")
    flags = XDP_FLAGS_SKB_MODE;
  else if (mode == "auto")
    flags = 0;
  else
    Throw(env, EINVAL, call, name_, "XDP mode must be 'native', 'generic' or 'auto', not '" + mode + "'");
  Napi::Object opts = OptsArg(info, 2);
  if (!OptBool(opts, "replace", false)) flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  NetnsInterface iface(env, info[0], OptString(opts, "netns"), call);
  int rc = bpf_xdp_attach(iface.ifindex(), fd_, flags, nullptr);
  if (rc < 0) {
    std::string detail;
    if (rc == -EBUSY || rc == -EEXIST) detail = "an XDP program is already attached; pass replace: true to replace it";
    if (rc == -EOPNOTSUPP) detail = "the driver has no native XDP; use mode 'generic' or 'auto'";
    Throw(env, -rc, call, name_, detail);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ifindex", iface.ifindex());
  out.Set("mode", mode);
  out.Set("progId", id_);
  return out;
}

// testRun({data, repeat, ctxIn, dataSizeOut, ctxSizeOut, flags, cpu})
//   -> Promise<{retval, data, ctx, duration}>
// Also runs SEC("syscall") programs: pass only ctxIn; the kernel writes the
// context back, which is returned as ctx.
Napi::Value NativeProgram::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_prog_test_run_opts";
  CheckOpen(env, call);
  Napi::Object opts = OptsArg(info, 0);
  struct State {
    std::vector<uint8_t> dataIn, dataOut, ctxIn, ctxOut;
    bool hasData = false, hasCtx = false;
    uint32_t repeat = 1, flags = 0, cpu = 0, retval = 0, duration = 0, dataSizeOut = 0, ctxSizeOut = 0;
  };
  auto st = std::make_shared<State>();
  Napi::Value d = opts.Get("data");
  if (d.IsBuffer()) {
    auto b = d.As<Napi::Buffer<uint8_t>>();
    st->dataIn.assign(b.Data(), b.Data() + b.Length());
    st->hasData = true;
    st->dataOut.resize(std::max<size_t>(OptU32(opts, "dataSizeOut", 0), b.Length() + 256));
  }
  Napi::Value c = opts.Get("ctxIn");
  if (c.IsBuffer()) {
    auto b = c.As<Napi::Buffer<uint8_t>>();
    st->ctxIn.assign(b.Data(), b.Data() + b.Length());
    st->hasCtx = true;
    st->ctxOut.resize(std::max<size_t>(OptU32(opts, "ctxSizeOut", 0), b.Length()));
  }
  st->repeat = OptU32(opts, "repeat", 1);
  st->flags = OptU32(opts, "flags", 0);
  st->cpu = OptU32(opts, "cpu", 0);
  int fd = DupFd(env, call);
  bool isSyscall = type_ == BPF_PROG_TYPE_SYSCALL;

  JobSpec spec;
  spec.call = call;
  spec.subject = name_;
  spec.run = [st, fd, isSyscall](std::string& detail) -> int {
    LIBBPF_OPTS(bpf_test_run_opts, o);
    if (st->hasData) {
      o.data_in = st->dataIn.data();
      o.data_size_in = st->dataIn.size();
      o.data_out = st->dataOut.data();
      o.data_size_out = st->dataOut.size();
    }
    if (st->hasCtx) {
      o.ctx_in = st->ctxIn.data();
      o.ctx_size_in = st->ctxIn.size();
      if (!isSyscall) {
        o.ctx_out = st->ctxOut.data();
        o.ctx_size_out = st->ctxOut.size();
      }
    }
    // The kernel refuses repeat, flags and cpu for syscall programs.
    if (!isSyscall) {
      o.repeat = st->repeat;
      o.flags = st->flags;
      o.cpu = st->cpu;
    }
    int rc = bpf_prog_test_run_opts(fd, &o);
    int e = rc < 0 ? errno : 0;
    close(fd);
    if (rc < 0) {
      if (e == ENOTSUP || e == kENOTSUPP) detail = "this program type cannot be test-run";
      if (e == EINVAL) detail = "the kernel refused the input (packet too short, or a context it does not accept)";
      return -e;
    }
    st->retval = o.retval;
    st->duration = o.duration;
    st->dataSizeOut = o.data_size_out;
    st->ctxSizeOut = isSyscall ? st->ctxIn.size() : o.ctx_size_out;
    if (isSyscall) st->ctxOut = st->ctxIn;
    return 0;
  };
  spec.result = [st](Napi::Env env) -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("retval", st->retval);
    out.Set("duration", st->duration);
    out.Set("data", st->hasData
                        ? Napi::Buffer<uint8_t>::Copy(env, st->dataOut.data(), st->dataSizeOut).As<Napi::Value>()
                        : env.Null());
    out.Set("ctx", st->hasCtx ? Napi::Buffer<uint8_t>::Copy(env, st->ctxOut.data(), st->ctxSizeOut).As<Napi::Value>()
                              : env.Null());
    return out;
  };
  return QueueJob(env, std::move(spec));
}

}  // namespace lbt
