"""One capture of a process per backend at a time, across processes.

Two captures of one pid by the same backend at once would corrupt each other
(two ptrace seizes of the walker's ptrace engine, two sets of perf_event rings
and decoders racing over one target, an inspector closed under the other's
session, two ``perf record`` helpers each restoring the target's state on
exit).  :func:`take` holds an ``fcntl.flock`` on a file named after the
process (pid *and* start time, so a reused pid is another process) and the
backend: the second capture, from this process or any other, gets a
:class:`~nodeflame.capture.base.CaptureError` that names the capture holding it
("pid 4242 is already being captured by the walker backend (nodeflame, pid
4300: python app.py)"), before it has touched the target.  The kernel releases
a flock when the last descriptor of its open file closes, so a holder that
dies (SIGKILL included) never leaves a stale lock; a child that inherits the
descriptor (the inspector's port watcher) keeps it held.

Backends of different names may capture one process at the same time (the
walker's tests compare it with the inspector on one process); the two engines
of the walker share the ``walker`` lock.

The files live in :data:`LOCK_DIR` (``/run/nodeflame`` when it can be made,
else ``/tmp/nodeflame-locks``, sticky and world-writable so that every user's
captures meet in one place).  Each holds one line of JSON about its holder
(pid, backend, start time, command), read only to word the refusal.  Since
anyone may create a file there, a lock held by a process that runs as a user
who could not capture the target (not root, not us, not the target's owner;
the holder named by the kernel in ``/proc/locks``, not by the file) is
ignored: it neither blocks a capture nor words a refusal.  Where no
lock file can be made (a read-only /run and /tmp) captures go on unlocked: a
lock is a safety net, never a reason to refuse a capture.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time

from . import procutil
from .base import CaptureError

__all__ = ["CaptureLock", "take", "holder", "busy", "lock_path", "LOCK_DIR"]

_DIRS = ("/run/nodeflame", "/tmp/nodeflame-locks")
LOCK_DIR: str | None = None       # the directory in use (found on first use)


def _lock_dir() -> str | None:
    global LOCK_DIR
    if LOCK_DIR is not None and os.path.isdir(LOCK_DIR):
        return LOCK_DIR
    for d in _DIRS:
        try:
            os.mkdir(d, 0o1777)
            os.chmod(d, 0o1777)          # the umask may have taken bits away
        except FileExistsError:
            pass
        except OSError:
            continue
        try:
            st = os.lstat(d)
        except OSError:
            continue
        import stat
        if not stat.S_ISDIR(st.st_mode) or (st.st_uid not in (0, os.geteuid())):
            continue                      # a symlink or someone else's directory: not ours to trust
        if os.access(d, os.W_OK | os.X_OK):
            LOCK_DIR = d
            return d
    return None


def lock_path(pid: int, backend: str) -> str | None:
    """The lock file of ``backend``'s captures of ``pid`` (None: no lock directory, or no such process)."""
    d = _lock_dir()
    start = procutil.start_time(pid)
    if d is None or start is None:
        return None
    return os.path.join(d, f"capture-{int(pid)}-{start}-{backend}.lock")


def _open(path: str) -> int | None:
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    for mode in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            fd = os.open(path, mode | flags, 0o666)
        except OSError:
            continue
        try:
            os.fchmod(fd, 0o666)          # any user's capture may lock it (and word the refusal)
        except OSError:
            pass
        return fd
    return None


def holder(pid: int, backend: str) -> dict | None:
    """Who holds ``backend``'s lock of ``pid``: the JSON its holder wrote ({} when it wrote none yet),
    or None when nobody holds it."""
    path = lock_path(pid, backend)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None if _held_by_a_stranger(fd, pid) else _info(fd)
            return None
        return None
    finally:
        os.close(fd)


def busy(pid: int, backend: str) -> str | None:
    """None when no ``backend`` capture of ``pid`` holds its lock, else the sentence saying which does."""
    info = holder(pid, backend)
    if info is None:
        return None
    return f"pid {pid} is already being captured by {_describe(info, backend)}"


def _info(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict, backend: str) -> str:
    """'the walker backend (nodeflame, pid 4300: python app.py, since 12:01:02)'."""
    hp = info.get("pid")
    if not isinstance(hp, int):
        return f"the {backend} backend of another nodeflame capture"
    parts = [f"pid {hp}"]
    if procutil.exists(hp):
        cmd = " ".join(str(info.get("command") or "").split())     # one line, whatever its arguments hold
        if len(cmd) > 120:
            cmd = cmd[:117] + "..."
        if cmd:
            parts[0] += f": {cmd}"
        when = info.get("since")
        if isinstance(when, (int, float)):
            parts.append("since " + time.strftime("%H:%M:%S", time.localtime(when)))
        return f"the {backend} backend of nodeflame ({', '.join(parts)})"
    # the holder is gone but the lock is held: a child that inherited it (the inspector's port watcher)
    return (f"the {backend} backend of nodeflame (pid {hp}, now ended: a helper it left, such as the "
            f"inspector's watcher that closes a port once the process runs again, still holds it)")


class CaptureLock:
    """A held capture lock (see the module docstring).  ``release()`` is idempotent."""

    def __init__(self, fd: int, path: str, pid: int, backend: str):
        self.fd, self.path, self.pid, self.backend = fd, path, pid, backend
        self.shared = False               # handed to a child (fileno()): it may outlive our release

    def fileno(self) -> int:
        """The descriptor, for a child process to inherit (it then holds the lock too)."""
        self.shared = True
        return self.fd

    def release(self) -> None:
        """Let go of the lock.  Unless a child shares it, the file is removed first (while still held:
        a capture that opened it meanwhile finds it unlinked and makes a new one, see take())."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        if not self.shared:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        try:
            os.close(fd)                  # the kernel drops the flock with the last descriptor
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def _sweep(d: str) -> None:
    """Remove the lock files of processes that are gone (a holder killed with SIGKILL cannot remove its
    own; the kernel released its lock).  A file is removed only while we hold its lock, so a capture
    that opened it meanwhile sees it unlinked and makes a new one (see take())."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != "capture" or not name.endswith(".lock"):
            continue
        try:
            pid, start = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if procutil.start_time(pid) == start:
            continue                      # its process lives: a capture may come
        path = os.path.join(d, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _held_by_a_stranger(fd: int, target: int) -> bool:
    """True when the process the kernel names as holding ``fd``'s flock (``/proc/locks``) is alive and runs
    as a user who is neither root, nor us, nor the target's owner, so it cannot be capturing the target.
    Anything unknown (no /proc/locks, the holder gone or in another pid namespace) counts as not a stranger."""
    try:
        st = os.fstat(fd)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as fh:
            rows = [line.split() for line in fh]
    except OSError:
        return False
    holders = {int(r[4]) for r in rows if len(r) >= 6 and r[1] == "FLOCK" and r[5] == key and r[4].isdigit()}
    if len(holders) != 1:
        return False
    owner = procutil.uid_of(holders.pop())
    return owner is not None and owner not in (0, os.geteuid(), procutil.uid_of(target))


def take(pid: int, backend: str, *, fix: str = "") -> CaptureLock | None:
    """Take ``backend``'s capture lock of ``pid``, or raise CaptureError naming who holds it.

    ``fix``: what the refusal suggests instead ("use another backend").  None when no lock can be made
    here (the capture goes on without one)."""
    path = lock_path(pid, backend)
    if path is None:
        return None
    _sweep(os.path.dirname(path))
    for _ in range(20):
        fd = _open(path)
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            info = _info(fd) if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
            stranger = info is not None and _held_by_a_stranger(fd, pid)
            os.close(fd)
            if info is None or stranger:
                # flock unsupported on this file system; or the lock is held by a process of a user who can
                # not capture this target (the directory is world-writable: a lock planted to block captures
                # or to word a false refusal is not one): no lock
                return None
            raise CaptureError(
                f"pid {pid} is already being captured by {_describe(info, backend)}; one {backend} capture of "
                f"a process at a time: wait for it to end{', or ' + fix if fix else ''}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)                      # its holder removed it as we opened it: lock the new file
    else:
        return None
    try:
        os.set_inheritable(fd, False)
        cmd = " ".join(procutil.cmdline(os.getpid()))
        line = json.dumps({"pid": os.getpid(), "backend": backend, "since": time.time(), "command": cmd,
                           "target": int(pid)}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode("utf-8", "replace"), 0)
    except OSError:
        pass                          # a read-only lock file: held all the same, the refusal says less
    return CaptureLock(fd, path, pid, backend)
