// Jobs off the event loop: the promise-returning calls for slow work.
#pragma once

#include <napi.h>

#include <functional>
#include <string>

namespace lbt {

// `run` executes on a libuv worker thread and returns 0 or a negative errno;
// `result` builds the resolved value on the JS thread.
struct JobSpec {
  std::string call;
  std::string subject;
  std::function<int(std::string& detail)> run;
  std::function<Napi::Value(Napi::Env)> result;
};
Napi::Promise QueueJob(Napi::Env env, JobSpec spec);

}  // namespace lbt
