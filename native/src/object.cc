// NativeObject: an ELF BPF object opened with libbpf, configured before load
// (map sizes, pinned maps to reuse), loaded, and asked for map and program handles.
#include "object.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "args.h"
#include "bpf_fd.h"
#include "errors.h"
#include "job.h"
#include "map.h"
#include "program.h"

namespace lbt {

namespace {

// What the object's calls on its maps and on its programs differ in: with
// these, one piece of code lists either, finds one by name and hands out its handle.
struct MapKind {
  using Item = struct bpf_map;
  using Handle = NativeMap;
  static constexpr const char* kName = "map";
  static constexpr const char* kNameArg = "map name";
  static constexpr const char* kListCall = "maps";
  static constexpr const char* kFdCall = "bpf_map__fd";
  static constexpr const char* kNotLoaded = "the object is not loaded yet; call load() first";
  static Item* Find(const bpf_object* obj, const char* name) { return bpf_object__find_map_by_name(obj, name); }
  static Item* Next(const bpf_object* obj, Item* it) { return bpf_object__next_map(obj, it); }
  static const char* NameOf(const Item* it) { return bpf_map__name(it); }
  static int FdOf(const Item* it) { return bpf_map__fd(it); }
  static Napi::Object Describe(Napi::Env env, const Item* m) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(m));
    o.Set("type", static_cast<uint32_t>(bpf_map__type(m)));
    o.Set("keySize", bpf_map__key_size(m));
    o.Set("valueSize", bpf_map__value_size(m));
    o.Set("maxEntries", bpf_map__max_entries(m));
    o.Set("flags", bpf_map__map_flags(m));
    o.Set("internal", bpf_map__is_internal(m));
    return o;
  }
};

struct ProgramKind {
  using Item = struct bpf_program;
  using Handle = NativeProgram;
  static constexpr const char* kName = "program";
  static constexpr const char* kNameArg = "program name";
  static constexpr const char* kListCall = "programs";
  static constexpr const char* kFdCall = "bpf_program__fd";
  static constexpr const char* kNotLoaded = "the object is not loaded yet, or this program was not loaded";
  static Item* Find(const bpf_object* obj, const char* name) { return bpf_object__find_program_by_name(obj, name); }
  static Item* Next(const bpf_object* obj, Item* it) { return bpf_object__next_program(obj, it); }
  static const char* NameOf(const Item* it) { return bpf_program__name(it); }
  static int FdOf(const Item* it) { return bpf_program__fd(it); }
  static Napi::Object Describe(Napi::Env env, const Item* p) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(p));
    o.Set("section", bpf_program__section_name(p));
    o.Set("type", static_cast<uint32_t>(bpf_program__type(p)));
    o.Set("autoload", bpf_program__autoload(p));
    return o;
  }
};

}  // namespace

class NativeObject : public Napi::ObjectWrap<NativeObject> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeObject",
                       {
                           InstanceMethod("maps", &NativeObject::List<MapKind>),
                           InstanceMethod("programs", &NativeObject::List<ProgramKind>),
                           InstanceMethod("setMaxEntries", &NativeObject::SetMaxEntries),
                           InstanceMethod("reusePinnedMap", &NativeObject::ReusePinnedMap),
                           InstanceMethod("setAutoload", &NativeObject::SetAutoload),
                           InstanceMethod("load", &NativeObject::Load),
                           InstanceMethod("map", &NativeObject::HandleOf<MapKind>),
                           InstanceMethod("program", &NativeObject::HandleOf<ProgramKind>),
                           InstanceMethod("close", &NativeObject::Close),
                       });
  }

  explicit NativeObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeObject>(info) {
    Napi::Env env = info.Env();
    path_ = StringArg(info, 0, "path");
    if (access(path_.c_str(), R_OK) != 0)
      Throw(env, errno, "bpf_object__open_file", path_,
            "cannot read BPF object file " + path_ + ": " + strerror(errno));
    ClearLibbpfLog();
    obj_ = bpf_object__open_file(path_.c_str(), nullptr);
    if (!obj_) {
      int e = errno;
      Throw(env, e, "bpf_object__open_file", path_, "not a loadable BPF object: " + LastLine(TakeLibbpfLog()));
    }
  }

  ~NativeObject() override {
    if (obj_) bpf_object__close(obj_);
  }

 private:
  static std::string LastLine(const std::string& log) {
    size_t end = log.find_last_not_of("\n ");
    if (end == std::string::npos) return "no diagnostics from libbpf";
    size_t start = log.rfind('\n', end);
    return log.substr(start == std::string::npos ? 0 : start + 1,
                      end - (start == std::string::npos ? 0 : start + 1) + 1);
  }

  // The verifier's own reason: the line before "processed N insns", and
  // the program it was judging.
  static std::string VerifierReason(const std::string& log) {
    size_t at = log.rfind("\nprocessed ");
    if (at == std::string::npos) return LastLine(log);
    std::string reason = LastLine(log.substr(0, at));
    size_t prog = log.rfind("prog '", at);
    if (prog != std::string::npos) {
      size_t end = log.find('\'', prog + 6);
      if (end != std::string::npos) reason = "program " + log.substr(prog + 6, end - prog - 6) + ": " + reason;
    }
    return reason;
  }

  void CheckOpen(Napi::Env env, const char* call) {
    if (!obj_) Throw(env, EBADF, call, path_, "object is closed");
    if (loading_) Throw(env, EBUSY, call, path_, "object is being loaded");
  }

  // The map or program named name; its absence is refused with the names there are.
  template <typename K>
  typename K::Item* Find(Napi::Env env, const std::string& name, const char* call) {
    typename K::Item* found = K::Find(obj_, name.c_str());
    if (!found) {
      std::string names;
      for (typename K::Item* it = K::Next(obj_, nullptr); it; it = K::Next(obj_, it))
        names += (names.empty() ? "" : ", ") + std::string(K::NameOf(it));
      Throw(
          env, ENOENT, call, name,
          std::string("no ") + K::kName + " named '" + name + "' in " + path_ + " (" + K::kName + "s: " + names + ")");
    }
    return found;
  }

  // maps(), programs(): what the object file declares, before or after load.
  template <typename K>
  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env, K::kListCall);
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (typename K::Item* it = K::Next(obj_, nullptr); it; it = K::Next(obj_, it)) out.Set(i++, K::Describe(env, it));
    return out;
  }

  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* call = "bpf_map__set_max_entries";
    CheckOpen(env, call);
    std::string name = StringArg(info, 0, "map name");
    uint32_t n = U32Arg(info, 1, "maxEntries");
    if (n == 0) Throw(env, EINVAL, call, name, "max_entries must be at least 1");
    int rc = bpf_map__set_max_entries(Find<MapKind>(env, name, call), n);
    if (rc < 0) Throw(env, -rc, call, name, rc == -EBUSY ? "the object is already loaded; size maps before load" : "");
    return env.Undefined();
  }

  Napi::Value SetAutoload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* call = "bpf_program__set_autoload";
    CheckOpen(env, call);
    std::string name = StringArg(info, 0, "program name");
    int rc = bpf_program__set_autoload(Find<ProgramKind>(env, name, call), info.Length() > 1 && info[1].ToBoolean());
    if (rc < 0) Throw(env, -rc, call, name, rc == -EINVAL ? "the object is already loaded" : "");
    return env.Undefined();
  }

  // reusePinnedMap(name, path): the object's map becomes the map pinned at
  // path. A layout that differs is refused here, with what differs, rather
  // than as an opaque EINVAL from the load.
  Napi::Value ReusePinnedMap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* call = "bpf_map__reuse_fd";
    CheckOpen(env, call);
    std::string name = StringArg(info, 0, "map name");
    std::string path = StringArg(info, 1, "path");
    struct bpf_map* m = Find<MapKind>(env, name, call);
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) {
      int e = errno;
      Throw(env, e, "bpf_obj_get", path, e == ENOENT ? "nothing is pinned at " + path : "");
    }
    struct bpf_map_info mi =
        BpfObjInfo<struct bpf_map_info>(env, fd, path, "the object pinned at " + path + " is not a map");
    std::string diff;
    auto cmp = [&diff](const char* what, uint32_t pinned, uint32_t wanted) {
      if (pinned != wanted)
        diff += std::string(diff.empty() ? "" : ", ") + what + " " + std::to_string(pinned) + " (pinned) vs " +
                std::to_string(wanted) + " (object)";
    };
    cmp("type", mi.type, bpf_map__type(m));
    cmp("key size", mi.key_size, bpf_map__key_size(m));
    cmp("value size", mi.value_size, bpf_map__value_size(m));
    cmp("max entries", mi.max_entries, bpf_map__max_entries(m));
    cmp("flags", mi.map_flags, bpf_map__map_flags(m));
    if (!diff.empty()) {
      close(fd);
      Throw(env, EINVAL, call, name, "pinned map " + path + " does not match: " + diff);
    }
    int rc = bpf_map__reuse_fd(m, fd);
    close(fd);
    if (rc < 0) Throw(env, -rc, call, name);
    return env.Undefined();
  }

  // load() -> Promise<void>. The verifier can take a while on a large
  // program, so this runs off the event loop.
  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env, "bpf_object__load");
    loading_ = true;
    struct bpf_object* obj = obj_;
    auto log = std::make_shared<std::string>();
    JobSpec spec;
    spec.call = "bpf_object__load";
    spec.subject = path_;
    spec.run = [obj, log](std::string& detail) -> int {
      ClearLibbpfLog();
      int rc = bpf_object__load(obj);
      *log = TakeLibbpfLog();
      if (rc < 0) {
        detail = VerifierReason(*log);
        if (rc == -EPERM)
          detail = "operation not permitted: run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN";
        if (rc == -EACCES || rc == -EINVAL) detail = "the verifier rejected a program: " + detail;
      }
      return rc;
    };
    spec.result = [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
    Napi::Promise p = QueueJob(env, std::move(spec));
    // Attach the full log to a rejection, and clear the busy flag either way.
    Napi::Object self = Value();
    auto settle = Napi::Function::New(env, [this, log](const Napi::CallbackInfo& cb) -> Napi::Value {
      loading_ = false;
      loaded_ = true;
      return cb.Env().Undefined();
    });
    auto fail = Napi::Function::New(env, [this, log](const Napi::CallbackInfo& cb) -> Napi::Value {
      loading_ = false;
      Napi::Value err = cb[0];
      if (err.IsObject()) err.As<Napi::Object>().Set("log", *log);
      throw Napi::Error(cb.Env(), err);
    });
    Napi::Value chained = p.Get("then").As<Napi::Function>().Call(p, {settle, fail});
    (void)self;
    return chained;
  }

  // map(name), program(name): a handle of its own (a dup of libbpf's fd) on one of the loaded object's.
  template <typename K>
  Napi::Value HandleOf(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* call = K::kFdCall;
    CheckOpen(env, call);
    std::string name = StringArg(info, 0, K::kNameArg);
    int fd = K::FdOf(Find<K>(env, name, call));
    if (fd < 0) Throw(env, EINVAL, call, name, K::kNotLoaded);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) Throw(env, errno, call, name);
    return K::Handle::FromFd(env, dup, name);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (loading_) Throw(info.Env(), EBUSY, "bpf_object__close", path_, "object is being loaded");
    if (obj_) bpf_object__close(obj_);
    obj_ = nullptr;
    return info.Env().Undefined();
  }

  struct bpf_object* obj_ = nullptr;
  std::string path_;
  bool loading_ = false;
  bool loaded_ = false;
};

Napi::Function InitObject(Napi::Env env) { return NativeObject::Init(env); }

}  // namespace lbt
