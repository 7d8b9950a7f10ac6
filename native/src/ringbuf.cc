// NativeRingBuffer: a consumer of a BPF ring buffer map. poll() runs libbpf's
// ring_buffer__poll on a worker thread and resolves with the samples it
// collected, so the event loop never waits on the kernel.
#include "ringbuf.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "job.h"

namespace lbt {

namespace {

struct Sink {
  std::vector<std::string>* samples = nullptr;
  size_t max = 0;
};

int OnSample(void* ctx, void* data, size_t size) {
  auto* sink = static_cast<Sink*>(ctx);
  if (sink->samples) sink->samples->emplace_back(static_cast<char*>(data), size);
  // A positive return stops this poll early: the batch is full.
  return sink->samples && sink->samples->size() >= sink->max ? 1 : 0;
}

}  // namespace

class NativeRingBuffer : public Napi::ObjectWrap<NativeRingBuffer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeRingBuffer",
                       {
                           InstanceMethod("poll", &NativeRingBuffer::Poll),
                           InstanceMethod("close", &NativeRingBuffer::Close),
                       });
  }

  // new NativeRingBuffer(mapFd, label): the fd is borrowed (duplicated here).
  explicit NativeRingBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeRingBuffer>(info) {
    Napi::Env env = info.Env();
    int fd = static_cast<int>(U32Arg(info, 0, "fd"));
    name_ = StringArg(info, 1, "label");
    fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (fd_ < 0) Throw(env, errno, "ring_buffer__new", name_);
    sink_ = new Sink();
    rb_ = ring_buffer__new(fd_, OnSample, sink_, nullptr);
    if (!rb_) {
      int e = errno;
      close(fd_);
      delete sink_;
      Throw(env, e, "ring_buffer__new", name_, e == EINVAL ? "not a ring buffer map" : "");
    }
  }

  ~NativeRingBuffer() override { Release(); }

 private:
  void Release() {
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    delete sink_;
    sink_ = nullptr;
  }

  // poll(timeoutMs, maxSamples) -> Promise<Buffer[]>
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* call = "ring_buffer__poll";
    if (!rb_ || closing_) Throw(env, EBADF, call, name_, "ring buffer is closed");
    if (busy_) Throw(env, EBUSY, call, name_, "a poll is already running on this ring buffer");
    int timeout = static_cast<int>(U32Arg(info, 0, "timeoutMs"));
    size_t max = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 4096;
    busy_ = true;
    auto samples = std::make_shared<std::vector<std::string>>();
    struct ring_buffer* rb = rb_;
    Sink* sink = sink_;
    JobSpec spec;
    spec.call = call;
    spec.subject = name_;
    spec.run = [rb, sink, samples, timeout, max](std::string&) -> int {
      sink->samples = samples.get();
      sink->max = max ? max : 4096;
      int rc = ring_buffer__poll(rb, timeout);
      sink->samples = nullptr;
      return rc < 0 && rc != -EINTR ? rc : 0;
    };
    spec.result = [this, samples](Napi::Env env) -> Napi::Value {
      busy_ = false;
      if (closing_) Release();
      Napi::Array out = Napi::Array::New(env, samples->size());
      for (size_t i = 0; i < samples->size(); i++)
        out.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>((*samples)[i].data()),
                                               (*samples)[i].size()));
      return out;
    };
    // Keep this object alive until the poll completes.
    Ref();
    Napi::Promise p = QueueJob(env, std::move(spec));
    Napi::Function done = Napi::Function::New(env, [this](const Napi::CallbackInfo& cb) -> Napi::Value {
      busy_ = false;
      if (closing_) Release();
      Unref();
      if (cb.Length() > 0 && cb[0].IsObject() && cb[0].As<Napi::Object>().Has("errno"))
        throw Napi::Error(cb.Env(), cb[0]);
      return cb.Length() > 0 ? cb[0] : cb.Env().Undefined();
    });
    return p.Get("then").As<Napi::Function>().Call(p, {done, done});
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (busy_)
      closing_ = true;  // released when the poll returns
    else
      Release();
    return info.Env().Undefined();
  }

  struct ring_buffer* rb_ = nullptr;
  Sink* sink_ = nullptr;
  int fd_ = -1;
  bool busy_ = false;
  bool closing_ = false;
  std::string name_;
};

Napi::Function InitRingBuffer(Napi::Env env) { return NativeRingBuffer::Init(env); }

}  // namespace lbt
