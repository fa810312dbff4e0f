"""Process helpers for the capture backends, read from /proc (Linux).

Everything here only reads /proc or sends a signal that was checked first;
nothing attaches to or stops a process.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time

from .target import Target, TargetError

PROC = "/proc"


# ---------------------------------------------------------------------- basics
def _read(path: str, binary: bool = False):
    with open(path, "rb" if binary else "r") as fh:
        return fh.read()


def exists(pid: int) -> bool:
    """True while /proc/<pid> exists and is not a zombie."""
    st = state(pid)
    return st is not None and st not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    """True when pid is gone or a zombie, or becomes one within ``seconds``.  A process that is exiting
    has closed its sockets and refuses ptrace (EPERM) a while before its state says so: every thread
    must exit first, which takes longest on a busy machine."""
    end = time.monotonic() + seconds
    while exists(pid):
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


def state(pid: int) -> str | None:
    """One-letter process state (R, S, D, T, t, Z, ...) or None when the pid is gone."""
    try:
        stat = _read(f"{PROC}/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # comm may contain spaces and parentheses: the state follows the LAST ')'
    try:
        return stat[stat.rindex(")") + 2]
    except (ValueError, IndexError):
        return None


def is_stopped(pid: int) -> bool:
    """True while pid is stopped: by a signal (SIGSTOP, SIGTSTP, Ctrl-Z: state T) or in a ptrace
    stop (state t).  A stopped process runs no code, so it handles no signal and answers no
    connection until it is continued (SIGCONT).  A ptrace stop must last (see :func:`stopped_state`): a
    profiler's sampling stops are microseconds long."""
    return stopped_state(pid) is not None


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with the pid,
    it names one process even after the pid is reused.  None when gone."""
    try:
        stat = _read(f"{PROC}/{pid}/stat")
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pending_signals(pid: int) -> int:
    """Mask of the signals sent to pid and not yet delivered (SigPnd | ShdPnd; bit n-1 = signal n).
    A stopped process keeps a signal sent to it pending until it is continued."""
    st = status(pid)
    mask = 0
    for k in ("SigPnd", "ShdPnd"):
        try:
            mask |= int(st.get(k, "0"), 16)
        except ValueError:
            pass
    return mask


def status(pid: int) -> dict:
    """/proc/<pid>/status as a dict of strings ({} when gone)."""
    try:
        text = _read(f"{PROC}/{pid}/status")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def tracer_pid(pid: int) -> int:
    try:
        return int(status(pid).get("TracerPid", "0"))
    except ValueError:
        return 0


#: How long a tracing stop ('t') must last, without the thread running in between, to count as the
#: target being stopped (a debugger's breakpoint, a tracer that holds it).  A ptrace profiler's stops
#: are microseconds on an idle machine, but one stop copies a deep stack (~300 KB) and on a loaded
#: machine the tracer is descheduled inside it: the walker's stops were seen to last over 0.2 s there.
TRACE_SETTLE = 1.5


def _runs(pid: int) -> int | None:
    """How many times the thread ``pid`` has been put on a CPU (schedstat's third field), None unknown."""
    try:
        return int(_read(f"{PROC}/{pid}/task/{pid}/schedstat").split()[2])
    except (OSError, ValueError, IndexError):
        return None


def stopped_state(pid: int, settle: float = 0.2) -> str | None:
    """'T' or 't' when pid is stopped and stays stopped for ``settle`` s (checked every 10 ms), else None.

    A thread a ptrace profiler samples (the walker's ptrace engine, perf's tools) is in tracing stop
    ('t') for microseconds at a time: one reading of the state would call it stopped.  So a tracing
    stop must last ``max(settle, TRACE_SETTLE)``, and a thread that was put on a CPU in between (its
    schedstat run count moved: the tracer let it run between two stops the 10 ms readings did not
    see) is not stopped, whatever its state."""
    st = state(pid)
    if st not in ("T", "t"):
        return None
    runs = _runs(pid)
    start = time.monotonic()
    traced = st == "t"
    while time.monotonic() - start < (max(settle, TRACE_SETTLE) if traced else settle):
        time.sleep(0.01)
        st = state(pid)
        if st not in ("T", "t"):
            return None
        if runs is not None and _runs(pid) != runs:
            return None
        traced = traced or st == "t"
    return st


def schedstat(pid: int, tid: int):
    """(ns on a CPU, ns waiting on a run queue, times run) of a thread, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            a = f.read().split()
        return int(a[0]), int(a[1]), int(a[2])
    except (OSError, ValueError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used, in seconds (0.0 when gone)."""
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return 0.0
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return 0.0


def uid_of(pid: int) -> int | None:
    try:
        return int(status(pid)["Uid"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def exe(pid: int) -> str:
    """Path of the executable (/proc/<pid>/exe), '' when not readable (another user's process)."""
    try:
        return os.readlink(f"{PROC}/{pid}/exe")
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    try:
        data = _read(f"{PROC}/{pid}/cmdline", binary=True)
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in data.split(b"\0")[:-1]] if data else []


def comm(pid: int) -> str:
    try:
        return _read(f"{PROC}/{pid}/comm").strip()
    except OSError:
        return ""


def environ(pid: int) -> dict | None:
    """The process's initial environment, or None when not readable."""
    try:
        data = _read(f"{PROC}/{pid}/environ", binary=True)
    except OSError:
        return None
    env = {}
    for item in data.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return env


def threads(pid: int) -> dict[int, str]:
    """tid -> thread name (comm) of every thread of pid."""
    out = {}
    try:
        tids = os.listdir(f"{PROC}/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            out[int(t)] = _read(f"{PROC}/{pid}/task/{t}/comm").strip()
        except (OSError, ValueError):
            pass
    return out


#: thread names node gives every thread, and its name for a worker it was given no name for
GENERIC_THREAD_NAMES = frozenset({"node", "nodejs", "MainThread", "WorkerThread", ""})


def worker_label(comms, index: int, taken=(), main_comm=()) -> str:
    """The ``thread`` value of worker thread number ``index`` (1-based, in the order found), whose
    thread names (comm) were ``comms``: node >= 24 names a worker's thread after ``new Worker(f, {name})``
    (cut to the kernel's 15 characters), so the last of them that is neither generic nor the main
    thread's (``main_comm``), else ``worker <index>``; made unique among ``taken`` by adding the index."""
    own = [c for c in dict.fromkeys(comms) if c not in GENERIC_THREAD_NAMES and c not in main_comm]
    name = own[-1] if own else f"worker {index}"
    if name in taken:
        name = f"{name} (worker {index})"
    return name


# ---------------------------------------------------------------------- node
_NODE_EXE = re.compile(r"^(node|nodejs)(\d+(\.\d+)*)?$")


def looks_like_node(path: str) -> bool:
    """True if the executable's name is node's (node, nodejs, node20, nodejs18.1...)."""
    return bool(_NODE_EXE.match(os.path.basename(path)))


def is_node(pid: int) -> bool | None:
    """True if pid runs node, False if it clearly does not, None if it cannot be told."""
    path = exe(pid)
    if path:
        base = os.path.basename(path.replace(" (deleted)", ""))
        if _NODE_EXE.match(base):
            return True
        # an embedded node (libnode.so) counts as node
        try:
            with open(f"{PROC}/{pid}/maps") as fh:
                for line in fh:
                    if "libnode.so" in line:
                        return True
        except OSError:
            pass
        return False
    argv = cmdline(pid)
    if argv:
        return bool(_NODE_EXE.match(os.path.basename(argv[0])))
    c = comm(pid)
    if c:
        return c in ("node", "nodejs", "MainThread")
    return None


_VERSION_CACHE: dict = {}


def node_version(pid: int) -> str | None:
    """'v20.20.2' for the node binary pid runs (asks that binary), None when unknown."""
    path = exe(pid)
    if not path:
        return None
    try:
        st = os.stat(f"{PROC}/{pid}/exe")
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
    except OSError:
        return None
    if key in _VERSION_CACHE:
        return _VERSION_CACHE[key]
    ver = None
    try:
        r = subprocess.run([f"{PROC}/{pid}/exe", "--version"], capture_output=True, text=True, timeout=10,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        out = r.stdout.strip()
        if re.match(r"^v\d+\.\d+\.\d+", out):
            ver = out.split()[0]
    except (OSError, subprocess.SubprocessError):
        ver = None
    _VERSION_CACHE[key] = ver
    return ver


def node_flags(argv: list[str], env: dict | None = None) -> list[str]:
    """node's own options: those on the command line before the script, then NODE_OPTIONS."""
    flags = []
    for a in argv[1:]:
        if not a.startswith("-") or a == "--":
            break
        flags.append(a)
        if a in ("-e", "--eval", "-p", "--print", "-r", "--require", "--import", "--loader"):
            break  # what follows is code or a module, not a flag (good enough for our checks)
    if env and env.get("NODE_OPTIONS"):
        try:
            flags += shlex.split(env["NODE_OPTIONS"])
        except ValueError:
            flags += env["NODE_OPTIONS"].split()
    return flags


def has_flag(flags: list[str], *names: str) -> str | None:
    """The first flag among ``flags`` equal to one of ``names`` or ``name=...``; '_' and '-' alike."""
    want = {n.replace("_", "-") for n in names}
    for f in flags:
        k = f.split("=", 1)[0].replace("_", "-")
        if k in want:
            return f
    return None


def flag_value(flags: list[str], *names: str) -> str | None:
    f = has_flag(flags, *names)
    if f is None or "=" not in f:
        return None
    return f.split("=", 1)[1]


def describe(pid: int) -> Target:
    """A Target for pid (raises TargetError when there is no such process)."""
    if not exists(pid):
        raise TargetError(f"no process {pid}" if state(pid) is None else f"process {pid} has exited (zombie)")
    argv = cmdline(pid)
    env = environ(pid)
    t = Target(pid=pid, exe=exe(pid), argv=argv, uid=uid_of(pid), is_node=is_node(pid))
    t.node_options = node_flags(argv, env)
    if t.is_node:
        t.node_version = node_version(pid)
    return t


# ---------------------------------------------------------------------- signals
def signal_mask(pid: int, which: str = "SigCgt") -> int:
    """A signal mask from /proc/<pid>/status (SigCgt caught, SigIgn ignored, SigBlk blocked)."""
    try:
        return int(status(pid).get(which, "0"), 16)
    except ValueError:
        return 0


def catches(pid: int, sig: int) -> bool:
    """True if pid has a handler installed for ``sig`` (so sending it does not kill it)."""
    return bool(signal_mask(pid, "SigCgt") & (1 << (sig - 1)))


def can_signal(pid: int) -> str | None:
    """None if we may signal pid, else why not (with the fix)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"no process {pid}"
    except PermissionError:
        owner = uid_of(pid)
        who = _user_name(owner) if owner is not None else "another user"
        fix = "run nodeflame as root" if owner == 0 else f"run nodeflame as {who} or as root"
        return f"no permission to signal process {pid} (owned by {who}, you are {_user_name(os.geteuid())}); {fix}"
    return None


def _user_name(uid: int | None) -> str:
    if uid is None:
        return "?"
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return f"uid {uid}"


def send_signal(pid: int, sig: int) -> None:
    """os.kill with errors turned into TargetError messages."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise TargetError(f"process {pid} exited") from None
    except PermissionError:
        raise TargetError(can_signal(pid) or f"no permission to signal process {pid}") from None


def terminate(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """End a process we started: SIGTERM, then SIGKILL; reap it."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    except OSError:
        pass


def interrupt(proc: subprocess.Popen, timeout: float, kill_timeout: float = 5.0) -> bool:
    """End a helper we started the way it asks to be ended: SIGINT (it writes its output and exits),
    wait up to ``timeout``; if it still runs, :func:`terminate` it (SIGTERM, then SIGKILL).

    True if it ended by itself within ``timeout`` of SIGINT (or had already ended)."""
    if proc.poll() is not None:
        return True
    try:
        proc.send_signal(signal.SIGINT)
    except OSError:
        pass
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        terminate(proc, kill_timeout)
        return False


def wait_until_node(pid: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until pid has exec'd node (after fork+exec its exe changes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TargetError(f"the command exited with status {proc.returncode} before it could be profiled")
        if is_node(pid):
            return
        time.sleep(0.01)
    raise TargetError(f"process {pid} did not start node within {timeout:g} s")


# ---------------------------------------------------------------------- sockets
def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        fds = os.listdir(f"{PROC}/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"{PROC}/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def _parse_addr(hexaddr: str) -> tuple[str, int]:
    ip, port = hexaddr.split(":")
    port = int(port, 16)
    if len(ip) == 8:
        b = bytes.fromhex(ip)[::-1]
        return ".".join(str(x) for x in b), port
    # IPv6: four little-endian 32-bit words
    words = [bytes.fromhex(ip[i:i + 8])[::-1] for i in range(0, 32, 8)]
    raw = b"".join(words)
    import ipaddress
    return str(ipaddress.IPv6Address(raw)), port


def _listening_table(pid: int) -> list[tuple[str, int, int]]:
    """(ip, port, inode) of every TCP socket in LISTEN state visible in pid's network namespace."""
    rows = []
    for name in ("tcp", "tcp6"):
        try:
            text = _read(f"{PROC}/{pid}/net/{name}")
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A":
                continue
            try:
                ip, port = _parse_addr(parts[1])
                rows.append((ip, port, int(parts[9])))
            except (ValueError, IndexError):
                continue
    return rows


def listening_ports(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of the TCP sockets pid listens on (sorted)."""
    inodes = _socket_inodes(pid)
    return sorted({(ip, port) for ip, port, ino in _listening_table(pid) if ino in inodes})


def port_owner(port: int, pid_hint: int | None = None) -> int | None:
    """pid of a process that listens on ``port`` (in pid_hint's network namespace), or None."""
    table = _listening_table(pid_hint if pid_hint else os.getpid())
    inodes = {ino for _ip, p, ino in table if p == port}
    if not inodes:
        return None
    for d in os.listdir(PROC):
        if not d.isdigit():
            continue
        if _socket_inodes(int(d)) & inodes:
            return int(d)
    return -1  # listening, but by a process we cannot see


def port_listening(port: int, pid_hint: int | None = None) -> bool:
    table = _listening_table(pid_hint if pid_hint else os.getpid())
    return any(p == port for _ip, p, _ino in table)


def netns_id(pid: int | str = "self") -> int | None:
    """The inode of pid's network namespace (None when not readable)."""
    try:
        return os.stat(f"{PROC}/{pid}/ns/net").st_ino
    except OSError:
        return None


def own_netns(pid: int) -> bool:
    """True when pid shares our network namespace (or it cannot be told: then we try ours)."""
    theirs = netns_id(pid)
    return theirs is None or theirs == netns_id("self")


_CLONE_NEWNET = 0x40000000


def _setns(fd: int, nstype: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, nstype)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def connect_tcp(host: str, port: int, timeout: float, pid: int | None = None):
    """A TCP socket connected to host:port *in the network namespace of ``pid``* (as ``nsenter
    --net`` would): a process in a container listens on its own 127.0.0.1, not on ours.

    When pid is in another namespace, the socket is made by a short-lived thread that enters that
    namespace (setns(2) switches only the calling thread, and a socket stays in the namespace it
    was made in); that needs CAP_SYS_ADMIN (root).  Raises OSError (TimeoutError, ConnectionRefused,
    PermissionError naming the namespace...)."""
    import socket
    if pid is None or own_netns(pid):
        return socket.create_connection((host, port), timeout=timeout)
    out: dict = {}

    def work():
        try:
            mine = os.open(f"{PROC}/thread-self/ns/net", os.O_RDONLY)
            try:
                target = os.open(f"{PROC}/{pid}/ns/net", os.O_RDONLY)
            except OSError as e:
                os.close(mine)
                raise OSError(e.errno, f"cannot open the network namespace of process {pid}: {e.strerror}")
            try:
                try:
                    _setns(target, _CLONE_NEWNET)
                except OSError as e:
                    raise OSError(e.errno, f"cannot enter the network namespace of process {pid} "
                                           f"(setns: {e.strerror}; it needs root or CAP_SYS_ADMIN)") from None
                try:
                    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
                    s = socket.socket(fam, socket.SOCK_STREAM)
                finally:
                    _setns(mine, _CLONE_NEWNET)  # back before this thread does anything else
            finally:
                os.close(target)
                os.close(mine)
            try:
                s.settimeout(timeout)
                s.connect((host, port))
            except BaseException:
                s.close()
                raise
            out["sock"] = s
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    import threading
    th = threading.Thread(target=work, name=f"nodeflame-netns-{pid}", daemon=True)
    th.start()
    th.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


# ---------------------------------------------------------------------- health
def health(pid: int) -> dict:
    """What tests (and the capture) check after a capture: state, tracer, listening ports."""
    return {"state": state(pid), "tracer_pid": tracer_pid(pid), "ports": listening_ports(pid)}


def describe_pid_briefly(pid: int) -> str:
    argv = cmdline(pid)
    text = " ".join(" ".join(argv).split())  # one line: newlines/tabs in arguments become spaces
    return f"{pid} ({text[:60] or comm(pid) or '?'})"


__all__ = ["exists", "gone_within", "state", "is_stopped", "start_time", "pending_signals", "netns_id", "own_netns",
           "connect_tcp", "status", "tracer_pid", "uid_of", "exe", "cmdline", "comm", "environ",
           "threads", "looks_like_node",
           "is_node", "node_version", "node_flags", "has_flag", "flag_value", "describe",
           "signal_mask", "catches", "can_signal", "send_signal", "terminate", "interrupt", "wait_until_node",
           "listening_ports", "port_owner", "port_listening", "health"]
