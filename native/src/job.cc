#include "job.h"

#include <utility>

#include "errors.h"

namespace lbt {

// A promise-returning job. The spec's closures own whatever buffers they need,
// so nothing here touches JS values off the main thread.
namespace {
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, JobSpec spec)
      : Napi::AsyncWorker(env, "libbpf-ts"), deferred_(Napi::Promise::Deferred::New(env)), spec_(std::move(spec)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { err_ = spec_.run(detail_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(MakeError(env, -err_, spec_.call, spec_.subject, detail_).Value());
      return;
    }
    try {
      deferred_.Resolve(spec_.result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  JobSpec spec_;
  int err_ = 0;
  std::string detail_;
};
}  // namespace

Napi::Promise QueueJob(Napi::Env env, JobSpec spec) {
  Job* job = new Job(env, std::move(spec));
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

}  // namespace lbt
