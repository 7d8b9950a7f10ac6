#include "map.h"

#include <sys/mman.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "errors.h"
#include "job.h"

namespace lbt {

bool IsPerCpu(uint32_t t) {
  return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
         t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

uint32_t PossibleCpus() {
  static int n = libbpf_num_possible_cpus();
  return n > 0 ? static_cast<uint32_t>(n) : 1;
}

Napi::Function NativeMap::Init(Napi::Env env) {
  return Define(env, "NativeMap",
                {
                    InstanceMethod("info", &NativeMap::Info),
                    InstanceMethod("nextKey", &NativeMap::NextKey),
                    InstanceMethod("lookupBatch", &NativeMap::LookupBatch),
                    InstanceMethod("updateBatch", &NativeMap::UpdateBatch),
                    InstanceMethod("deleteBatch", &NativeMap::DeleteBatch),
                    InstanceMethod("mmap", &NativeMap::Mmap),
                });
}

// mmap(): an array map created with BPF_F_MMAPABLE, as an ArrayBuffer over
// its values (each rounded up to 8 bytes), shared with the kernel: large
// tables are written at memory speed instead of a syscall's copy per entry.
// Unmapped when the ArrayBuffer is collected.
Napi::Value NativeMap::Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env, "mmap");
  if (type_ != BPF_MAP_TYPE_ARRAY || !(flags_ & BPF_F_MMAPABLE))
    Throw(env, EINVAL, "mmap", name_, "only an array map created with BPF_F_MMAPABLE can be mapped");
  size_t len = static_cast<size_t>((valueSize_ + 7) & ~7u) * maxEntries_;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  len = (len + page - 1) / page * page;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) Throw(env, errno, "mmap", name_);
  return Napi::ArrayBuffer::New(
      env, p, len,
      [](Napi::Env, void* data, size_t* size) {
        munmap(data, *size);
        delete size;
      },
      new size_t(len));
}

// new NativeMap(fd, label): takes ownership of fd and reads the map's info.
NativeMap::NativeMap(const Napi::CallbackInfo& info) : BpfFdHandle<NativeMap>(info) {
  struct bpf_map_info mi = Adopt<struct bpf_map_info>(info);
  if (mi.name[0]) name_ = mi.name;
  type_ = mi.type;
  keySize_ = mi.key_size;
  valueSize_ = mi.value_size;
  maxEntries_ = mi.max_entries;
  flags_ = mi.map_flags;
  id_ = mi.id;
  valueBufSize_ = IsPerCpu(type_) ? ((valueSize_ + 7) & ~7u) * PossibleCpus() : valueSize_;
  scratch_.resize(std::max<uint32_t>(valueBufSize_, keySize_) + 8);
}

const uint8_t* NativeMap::KeyArg(const Napi::CallbackInfo& info, size_t i, const char* call) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsBuffer())
    Throw(env, EINVAL, call, name_, "key must be a Buffer of " + std::to_string(keySize_) + " bytes");
  auto buf = info[i].As<Napi::Buffer<uint8_t>>();
  if (buf.Length() != keySize_)
    Throw(env, EINVAL, call, name_,
          "key is " + std::to_string(buf.Length()) + " bytes, map " + name_ + " has " + std::to_string(keySize_) +
              "-byte keys");
  return buf.Data();
}

Napi::Value NativeMap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env, "info");
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", name_);
  o.Set("type", type_);
  o.Set("id", id_);
  o.Set("keySize", keySize_);
  o.Set("valueSize", valueSize_);
  o.Set("maxEntries", maxEntries_);
  o.Set("flags", flags_);
  o.Set("perCpu", IsPerCpu(type_));
  o.Set("possibleCpus", PossibleCpus());
  return o;
}

Napi::Value NativeMap::NextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env, "bpf_map_get_next_key");
  const uint8_t* key = nullptr;
  if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) key = KeyArg(info, 0, "bpf_map_get_next_key");
  if (bpf_map_get_next_key(fd_, key, scratch_.data()) != 0) {
    if (errno == ENOENT) return env.Null();
    Throw(env, errno, "bpf_map_get_next_key", name_);
  }
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(scratch_.data()), keySize_);
}

// lookupBatch(token | null, count, andDelete) -> Promise<{keys, values, count, token, done}>
// One chunk of a batch dump. The kernel answers ENOSPC when one hash bucket
// holds more entries than `count`; the job then retries with a larger count.
Napi::Value NativeMap::LookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool andDelete = info.Length() > 2 && info[2].ToBoolean();
  const char* call = andDelete ? "bpf_map_lookup_and_delete_batch" : "bpf_map_lookup_batch";
  CheckOpen(env, call);
  const size_t tokenSize = std::max<uint32_t>(keySize_, 8);
  auto inToken = std::make_shared<std::vector<uint8_t>>();
  if (info.Length() > 0 && info[0].IsBuffer()) {
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    inToken->assign(b.Data(), b.Data() + std::min(b.Length(), tokenSize));
    inToken->resize(tokenSize);
  }
  uint32_t count = U32Arg(info, 1, "count");
  if (count == 0) Throw(env, EINVAL, call, name_, "count must be at least 1");
  int fd = DupFd(env, call);

  struct State {
    std::vector<uint8_t> keys, values, outToken;
    uint32_t count = 0;
    bool done = false;
  };
  auto st = std::make_shared<State>();
  uint32_t keySize = keySize_, valueBufSize = valueBufSize_;
  JobSpec spec;
  spec.call = call;
  spec.subject = name_;
  spec.run = [=](std::string& detail) -> int {
    uint32_t want = count;
    for (int attempt = 0; attempt < 16; attempt++) {
      st->keys.resize(static_cast<size_t>(want) * keySize);
      st->values.resize(static_cast<size_t>(want) * valueBufSize);
      st->outToken.assign(tokenSize, 0);
      uint32_t n = want;
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      void* in = inToken->empty() ? nullptr : inToken->data();
      int rc = andDelete
                   ? bpf_map_lookup_and_delete_batch(fd, in, st->outToken.data(), st->keys.data(), st->values.data(),
                                                     &n, &opts)
                   : bpf_map_lookup_batch(fd, in, st->outToken.data(), st->keys.data(), st->values.data(), &n, &opts);
      int e = rc < 0 ? errno : 0;
      if (rc < 0 && e == ENOSPC && n == 0) {
        want *= 2;
        continue;
      }
      st->count = n;
      if (rc < 0 && e != ENOENT) {
        close(fd);
        if (e == EINVAL || e == kENOTSUPP || e == EOPNOTSUPP)
          detail = "batch operations are not supported for this map type";
        return -e;
      }
      st->done = rc < 0 && e == ENOENT;
      close(fd);
      return 0;
    }
    close(fd);
    detail = "a hash bucket holds more entries than a batch can take";
    return -ENOSPC;
  };
  spec.result = [st, keySize, valueBufSize](Napi::Env env) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("count", st->count);
    o.Set("keys", Napi::Buffer<uint8_t>::Copy(env, st->keys.data(), static_cast<size_t>(st->count) * keySize));
    o.Set("values", Napi::Buffer<uint8_t>::Copy(env, st->values.data(), static_cast<size_t>(st->count) * valueBufSize));
    o.Set("token", st->done
                       ? env.Null()
                       : Napi::Buffer<uint8_t>::Copy(env, st->outToken.data(), st->outToken.size()).As<Napi::Value>());
    o.Set("done", st->done);
    return o;
  };
  return QueueJob(env, std::move(spec));
}

// updateBatch(keys, values, count, flags) -> Promise<number>
Napi::Value NativeMap::UpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_update_batch";
  CheckOpen(env, call);
  if (info.Length() < 3 || !info[0].IsBuffer() || !info[1].IsBuffer())
    Throw(env, EINVAL, call, name_, "expects (keys: Buffer, values: Buffer, count: number)");
  uint32_t count = U32Arg(info, 2, "count");
  auto kb = info[0].As<Napi::Buffer<uint8_t>>();
  auto vb = info[1].As<Napi::Buffer<uint8_t>>();
  if (kb.Length() != static_cast<size_t>(count) * keySize_ || vb.Length() != static_cast<size_t>(count) * valueBufSize_)
    Throw(env, EINVAL, call, name_,
          "keys must hold count x " + std::to_string(keySize_) + " bytes and values count x " +
              std::to_string(valueBufSize_) + " bytes");
  uint64_t flags =
      info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : uint64_t{BPF_ANY};
  auto keys = std::make_shared<std::vector<uint8_t>>(kb.Data(), kb.Data() + kb.Length());
  auto values = std::make_shared<std::vector<uint8_t>>(vb.Data(), vb.Data() + vb.Length());
  return QueueCountedBatch(
      env, call, count,
      [keys, values, flags](int fd, uint32_t* n) {
        LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
        return bpf_map_update_batch(fd, keys->data(), values->data(), n, &opts);
      },
      [count](int e, uint32_t n) -> std::string {
        if (e == E2BIG || e == ENOMEM)
          return "map is full after " + std::to_string(n) + " of " + std::to_string(count) + " entries";
        return "";
      });
}

// deleteBatch(keys, count) -> Promise<number>
Napi::Value NativeMap::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* call = "bpf_map_delete_batch";
  CheckOpen(env, call);
  if (info.Length() < 2 || !info[0].IsBuffer())
    Throw(env, EINVAL, call, name_, "expects (keys: Buffer, count: number)");
  uint32_t count = U32Arg(info, 1, "count");
  auto kb = info[0].As<Napi::Buffer<uint8_t>>();
  if (kb.Length() != static_cast<size_t>(count) * keySize_)
    Throw(env, EINVAL, call, name_, "keys must hold count x " + std::to_string(keySize_) + " bytes");
  auto keys = std::make_shared<std::vector<uint8_t>>(kb.Data(), kb.Data() + kb.Length());
  return QueueCountedBatch(
      env, call, count,
      [keys](int fd, uint32_t* n) {
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        return bpf_map_delete_batch(fd, keys->data(), n, &opts);
      },
      [](int e, uint32_t n) -> std::string {
        if (e == ENOENT)
          return "key " + std::to_string(n) + " of the batch does not exist; " + std::to_string(n) +
                 " deleted before it";
        return "";
      });
}

Napi::Value NativeMap::QueueCountedBatch(Napi::Env env, const char* call, uint32_t count,
                                         std::function<int(int fd, uint32_t* n)> op,
                                         std::function<std::string(int e, uint32_t n)> explain) {
  auto done = std::make_shared<uint32_t>(0);
  int fd = DupFd(env, call);
  JobSpec spec;
  spec.call = call;
  spec.subject = name_;
  spec.run = [=](std::string& detail) -> int {
    uint32_t n = count;
    int rc = count ? op(fd, &n) : 0;
    int e = rc < 0 ? errno : 0;
    close(fd);
    *done = n;
    if (rc < 0) {
      detail = explain(e, n);
      return -e;
    }
    return 0;
  };
  spec.result = [done](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *done); };
  return QueueJob(env, std::move(spec));
}

}  // namespace lbt
