#include "lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
#include "errors.h"

namespace lbt {

Napi::Value LockFile(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  // A holder removes the file before it lets go (so that none are left
  // behind): a lock taken on a file since removed is no lock, and is taken
  // again on the file that is there now.
  for (int attempt = 0; attempt < 8; attempt++) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) Throw(info.Env(), errno, "open", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      close(fd);
      Throw(info.Env(), err, "flock", path, err == EWOULDBLOCK ? "held by another process" : "");
    }
    struct stat held, now;
    if (fstat(fd, &held) == 0 && stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev)
      return Napi::Number::New(info.Env(), fd);
    close(fd);
  }
  Throw(info.Env(), EAGAIN, "flock", path, "the lock file keeps being replaced");
}

Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(U32Arg(info, 0, "fd"));
  flock(fd, LOCK_UN);
  close(fd);
  return info.Env().Undefined();
}

}  // namespace lbt
