// An exclusive advisory lock on a file (flock), held by an open descriptor:
// released when the descriptor is closed or the process dies, so that a lock
// of a dead process never blocks anyone.
#pragma once

#include <napi.h>

namespace lbt {

// lockFile(path) -> fd: creates the file when missing, takes LOCK_EX without
// waiting; throws a BpfError with EWOULDBLOCK when another process holds it.
Napi::Value LockFile(const Napi::CallbackInfo& info);
// unlockFile(fd): releases the lock and closes the descriptor.
Napi::Value UnlockFile(const Napi::CallbackInfo& info);

}  // namespace lbt
