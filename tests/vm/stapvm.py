"""The stap backend run for real: its module loaded in a Debian 13 kernel under qemu.

    sudo .venv/bin/python tests/vm/stapvm.py [--duration 16] [--node /usr/bin/node] [--keep DIR]

1. ``build-guest.sh``: a debootstrap'ed Debian 13 tree (kernel 6.12, its headers, systemtap 5.1 with
   the one runtime patch explained there), cached outside the repository.
2. The module is compiled ON THE HOST, in a chroot of that tree, with nodeflame's own
   ``build_module`` (``stap -r KREL -p4``, what ``nodeflame stap-script --build-for`` runs); cached by
   the script's hash.  (Pass 4 inside the emulated guest takes ~9 minutes; here 20-90 s cold.)
3. A raw ext4 image of the tree plus the node binary and a tiny init (PID 1) is made (cached; the
   guest mounts it read-only, so it stays pristine), and qemu boots the guest's own kernel with TCG
   (``-cpu Nehalem``: KVM here is a nested paravirtual hypervisor a stock kernel does not boot on).
   The first run saves the booted guest as it waits for "go" (modules loaded, node's and python's
   files in its page cache: qemu's migration stream, cached next to the image, see
   :func:`saved_guest`) and goes on; every later run resumes it from there (seconds instead of a
   ~30-40 s boot under TCG).  NODEFLAME_VM_SNAPSHOT=0 boots every time.
4. In the guest, ``cmd.sh`` (written here) starts ``tests/workloads/hot.js`` (functionA:functionB = 2:1
   by construction; it prints its own per-function time), runs the module with ``staprun`` on it,
   saves ``/proc/PID/maps``, then runs ``nodeflame record --backend stap --stap-module`` from the
   repository (shared read-only over 9p) with the guest's python3.
5. Back on the host, :func:`analyse` parses ``out.raw`` with the stap backend's own reader and
   native symbolisation (the guest's maps, files read under the guest tree) and compares with the truth.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HOT = REPO / "tests" / "workloads" / "hot.js"
GUEST_NODE = "/usr/local/bin/node"
sys.path.insert(0, str(REPO))

INIT = r"""#!/bin/sh
# nodeflame VM test: PID 1 of the guest (its root file system is read-only: what is written goes to
# tmpfs or the 9p share, so the disk is the image at every run).  Mount what staprun and the test need,
# wait for the host's "go" on the second serial port, mount the 9p shares, run /share/cmd.sh, power
# off (the host waits for qemu to exit).  The host saves the guest while it waits for "go" (see
# saved_guest()), so every later run resumes here instead of booting.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /root
export HOME=/root
modprobe 9pnet_virtio; modprobe 9p
# the files node and nodeflame's python read, in the page cache (saved with the guest)
cat @node@ > /dev/null
PYTHONDONTWRITEBYTECODE=1 python3 -c 'import numpy, pandas, elftools.elf.elffile' > /dev/console 2>&1
# ttyS1 kept open from here: a serial port nobody has open drops what arrives
exec 3< /dev/ttyS1
stty raw -echo <&3
echo "nodeflame-guest: waiting for go" > /dev/console
head -c 3 <&3 > /run/go
exec 3<&-
echo "nodeflame-guest: go ($(cat /run/go))" > /dev/console
# (/share and /repo are made in the image: the root is read-only)
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro repo /repo
echo "nodeflame-guest: kernel $(uname -r), $(nproc) cpus, $(staprun -V 2>&1 | head -1)" > /dev/console
sh /share/cmd.sh > /share/cmd.log 2>&1
echo "nodeflame-guest: cmd.sh exited $?" > /dev/console
sync
echo o > /proc/sysrq-trigger
sleep 30
"""

CMD = r"""#!/bin/sh
# runs in the guest (written by tests/vm/stapvm.py)
set -u
mark() { echo "{\"mark\": \"$1\", \"up\": $(cut -d' ' -f1 /proc/uptime), \"epoch\": $(date +%s.%N)}" >> /share/hot.out; }
cp /share/hot.js /tmp/hot.js
sleep 100000 | @node@ /tmp/hot.js --no-worker --print-ms=200 >> /share/hot.out 2> /share/hot.err &
P=$!
i=0
until grep -q ready /share/hot.out 2>/dev/null; do sleep 0.2; i=$((i+1)); [ $i -gt 300 ] && break; done
echo "node pid $P"
sleep 2
# (the output goes to the guest's tmpfs: staprun -o onto the 9p share exits 1 without a word)
staprun -x $P -b 32 -o /tmp/out.raw /share/@module@.ko > /share/staprun.log 2>&1 &
S=$!
# loading takes seconds under TCG (the runtime's kallsyms lookups): the window starts once it runs
i=0
until [ -d /sys/module/@module@ ] && [ "$(cat /proc/$S/comm 2>/dev/null)" = stapio ]; do
  sleep 0.1; i=$((i+1)); [ $i -gt 1200 ] && break
done
echo "module loaded after $i polls"
mark start
sleep @duration@
kill -INT $S
mark int
wait $S
echo "staprun status $?"
mark stop
cp /tmp/out.raw /share/out.raw
cp /proc/$P/maps /share/maps
echo $P > /share/pid
@record@
kill $P
"""

RECORD = r"""
mark start2
cd /tmp && PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/repo timeout 600 python3 -c 'import sys; from nodeflame.cli import main; sys.exit(main(sys.argv[1:]))' record --backend stap \
  --stap-module /share/@module@.ko --pid $P -d @duration@ -o /share/rec.nfprof > /share/record.log 2>&1
echo "record status $?"
mark stop2
"""


def _fill(text: str, **kw) -> str:
    for k, v in kw.items():
        text = text.replace(f"@{k}@", str(v))
    return text


def log(msg):
    print(f"stapvm: {msg}", file=sys.stderr, flush=True)


def guest_root() -> Path:
    r = subprocess.run([str(HERE / "build-guest.sh")], stdout=subprocess.PIPE, text=True, check=True)
    return Path(r.stdout.strip().splitlines()[-1])


def kernel_release(root: Path) -> str:
    rels = sorted(p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*"))
    if not rels:
        raise RuntimeError(f"no kernel in {root}/boot")
    return rels[-1]


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:16]


def build_module(root: Path, node: str, krel: str, *, hz: int = 1000, guru: bool = False) -> tuple[Path, float]:
    """The module for ``node`` and the guest kernel (cached by the script's hash); seconds spent building."""
    from nodeflame.capture import stap as st
    script = st.generate_script_for_binary(node, hz=hz, guru=guru)
    key = _sha(script, krel, json.dumps({**st.stap_defines(), **GUEST_DEFINES}, sort_keys=True),
               (root / "usr/share/systemtap/runtime/transport/transport.c").read_bytes())
    d = root.parent / "modules"
    d.mkdir(exist_ok=True)
    ko = d / f"nfvm_{'g' if guru else ''}{key}.ko"
    if ko.exists():
        return ko, 0.0
    t0 = time.monotonic()
    log(f"compiling the module for {krel} in a chroot of {root} (stap -p4)")
    # the module's name is compiled in (NAME.ko is module NAME), so it is built under its final name
    st.build_module(ko, kernel_release=krel, node=node, sysroot=str(root), hz=hz, guru=guru, defines=GUEST_DEFINES)
    return ko, time.monotonic() - t0


def make_image(root: Path, node: str) -> Path:
    """A raw ext4 image of the guest tree with node and the init script (cached by their content)."""
    node_bytes = Path(node).read_bytes()
    init = _fill(INIT, node=GUEST_NODE)
    key = _sha(root, hashlib.sha256(node_bytes).digest(), init)
    img = root.parent / f"guest-{key}.img"
    if img.exists():
        return img
    for old in root.parent.glob("guest-*.img"):
        old.unlink()
    dest = root / GUEST_NODE.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(node, dest)
    os.chmod(dest, 0o755)
    (root / "sbin/nf-init").write_text(init)
    os.chmod(root / "sbin/nf-init", 0o755)
    for mnt in ("share", "repo"):
        (root / mnt).mkdir(exist_ok=True)
    t0 = time.monotonic()
    tmp = img.with_suffix(".tmp")
    subprocess.run(["truncate", "-s", "4G", str(tmp)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(tmp)], check=True)
    tmp.rename(img)
    log(f"image {img} made in {time.monotonic() - t0:.0f} s")
    return img


class _Qmp:
    """The least of a QMP client: one command at a time, events skipped."""

    def __init__(self, path: Path, timeout: float = 60):
        import socket
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())                     # the greeting
        self("qmp_capabilities")

    def __call__(self, cmd: str, **args):
        self.f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError(f"qemu closed its QMP socket during {cmd}")
            r = json.loads(line)
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"QMP {cmd}: {r['error']}")

    def close(self):
        self.sock.close()


def _qemu_cmd(root: Path, img: Path, krel: str, share: Path, ctl: Path, smp: int, repo: Path = REPO) -> list[str]:
    """The guest's qemu command line.  A saved guest resumes only in the same machine, so its key
    (saved_guest()) hashes this line with the host's own paths (share, ctl, repo) left out."""
    return ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "Nehalem", "-m", "3G", "-smp", str(smp),
            "-display", "none", "-no-reboot", "-nodefaults",
            "-kernel", str(root / "boot" / f"vmlinuz-{krel}"), "-initrd", str(root / "boot" / f"initrd.img-{krel}"),
            "-append", "root=/dev/vda ro console=ttyS0 init=/sbin/nf-init panic=-1 quiet",
            "-drive", f"file={img},format=raw,if=virtio,readonly=on",
            "-virtfs", f"local,path={share},mount_tag=share,security_model=none,id=share",
            "-virtfs", f"local,path={repo},mount_tag=repo,security_model=none,id=repo,readonly=on",
            "-serial", f"file:{share / 'console.log'}",
            # ttyS1: the guest's init waits for "go" on it (sent once the 9p shares may be mounted)
            "-chardev", f"socket,id=go,path={ctl / 'go.sock'},server=on,wait=off", "-serial", "chardev:go",
            "-qmp", f"unix:{ctl / 'qmp.sock'},server=on,wait=off"]


def _console(share: Path) -> str:
    try:
        return (share / "console.log").read_text(errors="replace")
    except OSError:
        return ""


def _wait_console(proc, share: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in _console(share):
        if proc.poll() is not None:
            raise RuntimeError(f"qemu exited ({proc.returncode}) before the guest said {text!r}; console: "
                               + _console(share)[-2000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"the guest did not say {text!r} within {timeout:g} s; console: "
                               + _console(share)[-2000:])
        time.sleep(0.1)


def _kill(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def saved_guest(root: Path, img: Path, krel: str, smp: int = 2) -> Path | None:
    """Where the guest saved while its init waits for "go" (booted, modules loaded, files cached) is
    kept: a file of qemu's migration stream (the disk is the read-only image), keyed by this image
    file, qemu and the machine's command line (a saved guest resumes only in the same machine).  The
    first run saves it as it boots (see boot()); None when NODEFLAME_VM_SNAPSHOT=0 (every run boots)."""
    if os.environ.get("NODEFLAME_VM_SNAPSHOT", "1") == "0":
        return None
    qver = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    line = _qemu_cmd(root, img, krel, Path("SHARE"), Path("CTL"), smp, Path("REPO"))
    st = img.stat()            # this very file: another mkfs of the same tree is another disk
    return root.parent / f"saved-{_sha(img.name, st.st_ino, st.st_mtime_ns, qver, json.dumps(line))}.state"


def _save(qmp: _Qmp, dest: Path, timeout: float = 600) -> None:
    """Save the (paused) guest to ``dest`` (qemu's migration stream; written aside, then renamed)."""
    for old in dest.parent.glob("saved-*.state"):
        old.unlink(missing_ok=True)          # an older image's or qemu's (a reader keeps its open file)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    qmp("migrate", uri=f"exec:cat > {tmp}")
    deadline = time.monotonic() + timeout
    while (st := qmp("query-migrate").get("status")) not in ("completed", "failed", "cancelled"):
        if time.monotonic() > deadline:
            qmp("migrate_cancel")
            st = "too slow"
            break
        time.sleep(0.2)
    if st == "completed":
        tmp.rename(dest)
    else:
        tmp.unlink(missing_ok=True)
        log(f"qemu could not save the guest ({st}); the next run boots it again")


def boot(root: Path, img: Path, krel: str, share: Path, *, timeout: float = 900, smp: int = 2,
         saved: Path | None = None) -> tuple[float, str]:
    """Run the guest (it runs share/cmd.sh and powers off): resumed from ``saved`` when that file
    exists, else booted (and saved there once its init waits for "go", then continued).  Seconds it
    took and how it started ("resumed", "booted and saved", "booted")."""
    ctl = Path(tempfile.mkdtemp(prefix="nfvm-"))
    t0 = time.monotonic()
    how = "booted"
    try:
        cmd = _qemu_cmd(root, img, krel, share, ctl, smp)
        if saved is not None and saved.exists():
            cmd += ["-incoming", f"exec:cat {saved}"]
            how = "resumed"
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        try:
            if how == "booted":
                _wait_console(proc, share, "nodeflame-guest: waiting for go", timeout)
            qmp = _Qmp(ctl / "qmp.sock")
            if how == "booted" and saved is not None:
                import fcntl
                with open(saved.parent / ".saved.lock", "w") as lock:
                    try:      # one saver at a time; another run saving meanwhile: just run
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        lock = None
                    if lock is not None and not saved.exists():
                        qmp("stop")
                        _save(qmp, saved)
                        how = "booted and saved"
            deadline = time.monotonic() + 120
            while (st := qmp("query-status")["status"]) != "running":
                # saved or resumed, the guest is paused (it is saved paused): it goes on from here
                if st in ("paused", "postmigrate"):
                    qmp("cont")
                    continue
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the guest did not resume from {saved}: {st}, {qmp('query-migrate')}")
                time.sleep(0.05)
            qmp.close()
            import socket
            with socket.socket(socket.AF_UNIX) as go:
                go.connect(str(ctl / "go.sock"))
                for _ in range(10):          # the guest says it got it (a resend is read by nobody)
                    go.sendall(b"go\n")
                    try:
                        _wait_console(proc, share, "nodeflame-guest: go", 30)
                        break
                    except RuntimeError:
                        if proc.poll() is not None:
                            raise
                proc.wait(timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"qemu exited with {proc.returncode}; console: {_console(share)[-2000:]}")
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the guest did not power off within {timeout:g} s; console: "
                               + _console(share)[-2000:]) from None
        finally:
            _kill(proc)
    finally:
        shutil.rmtree(ctl, ignore_errors=True)
    return time.monotonic() - t0, how


#: the guest's sampling rate.  Under TCG emulation a sample costs many times what it costs on hardware;
#: at 1 kHz the probe overran systemtap's overload guard in one run of two on a quiet host, at 500 Hz not.
HZ = 500

#: seconds of each capture.  hot.js's clock is the guest's, which under TCG follows the host's: when the
#: guest stops running node (the host deschedules qemu's vCPU, or the guest kernel holds it), the wall
#: time goes to the function node was in, in one lump, while the sampler's timer, firing once when the
#: guest runs again, takes one sample.  Such freezes inside a capture (0.4 s of functionB in one, at host
#: load 4-5) move an 8 s truth by up to 5 pp; over 16 s they weigh half as much.
DURATION = 16

#: -D settings of the guest's module that differ from what nodeflame ships (stap_defines): systemtap's
#: overload guard (STP_OVERLOAD_THRESHOLD, 20 % of each 1e9 cycles) reads the guest's TSC, which under TCG
#: follows the host's clock, so while the host deschedules qemu's vCPU thread inside a probe those
#: cycles are charged to the probe.  On a host at load 3-7 the guard stopped the capture at 24 % (241 and
#: 245 M cycles) both at 500 Hz and at 250 Hz: host time, not the probe's cost (which halves with the
#: rate).  The guard stays on, at 50 %: it still stops a probe that runs away.
GUEST_DEFINES = {"STP_OVERLOAD_THRESHOLD": "500000000LL"}


def run(*, node: str = "/usr/bin/node", duration: float = DURATION, record: bool = True, share: Path | None = None,
        timeout: float = 900, hz: int = HZ) -> dict:
    """Build/reuse everything, boot (or resume) once, return {paths, times}."""
    times = {}
    t0 = time.monotonic()
    root = guest_root()
    times["guest_tree_s"] = round(time.monotonic() - t0, 1)
    krel = kernel_release(root)
    ko, times["module_build_s"] = build_module(root, node, krel, hz=hz)
    times["module_build_s"] = round(times["module_build_s"], 1)
    t1 = time.monotonic()
    img = make_image(root, node)
    times["image_s"] = round(time.monotonic() - t1, 1)
    saved = saved_guest(root, img, krel)
    share = Path(share or tempfile.mkdtemp(prefix="nodeflame-vm-"))
    share.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ko, share / ko.name)
    shutil.copyfile(HOT, share / "hot.js")
    rec = _fill(RECORD, module=ko.stem, duration=duration) if record else ""
    (share / "cmd.sh").write_text(_fill(CMD, node=GUEST_NODE, module=ko.stem, duration=duration, record=rec))
    try:
        took, how = boot(root, img, krel, share, timeout=timeout, saved=saved)
    except (RuntimeError, OSError) as e:
        if saved is None or not saved.exists() or (share / "cmd.log").exists():
            raise
        # the saved guest did not resume (it never ran cmd.sh): drop it, boot (and save) this time
        log(f"the saved guest did not resume ({e}); booting")
        saved.unlink(missing_ok=True)
        (share / "console.log").unlink(missing_ok=True)
        took, how = boot(root, img, krel, share, timeout=timeout, saved=saved)
    times["guest"] = how
    times["boot_and_run_s" if how != "resumed" else "resume_and_run_s"] = round(took, 1)
    times["total_s"] = round(time.monotonic() - t0, 1)
    return {"root": str(root), "kernel": krel, "module": str(ko), "share": str(share), "times": times}


# ------------------------------------------------------------------ analysis on the host
def truth(share: Path, start="start", stop="stop", window=None) -> dict:
    """% of wall time in functionA/functionB between the marks (or, with ``window`` = (epoch start,
    seconds), in that window: the marks relate the guest's epoch to hot.js's monotonic clock), from
    hot.js's own counters (printed every 200 ms).

    Between the rows nearest INSIDE the span, never outside it: around the sampling the guest loads
    and unloads the module, which under TCG holds node up for seconds (no row printed for 2.05 s
    after one record's end: the wall time of that freeze went to the function node was in, A, and
    turned a 62.1 % A of 8.0 s into 69.7 % of the 9.4 s reaching the next row).  No sample sees that
    time; a span a row shorter than the sampling loses nothing but a few samples' worth of the same
    steady workload."""
    rows, marks = [], {}
    for ln in (share / "hot.out").read_text().splitlines():
        try:
            d = json.loads(ln)
        except ValueError:
            continue
        if "mark" in d:
            marks[d["mark"]] = (len(rows), d)
        elif "a" in d:
            rows.append(d)
    if window is None:
        i0 = marks[start][0]                       # the first row after the start mark
        i1 = marks[stop][0] - 1                    # the last one before the stop mark
    else:
        m = marks[start][1]
        off = m["epoch"] - m["up"]                 # epoch - uptime (CLOCK_BOOTTIME = monotonic here)
        t0, t1 = (window[0] - off) * 1e9, (window[0] + window[1] - off) * 1e9
        inside = [i for i, r in enumerate(rows) if t0 <= r["m"] <= t1]
        i0, i1 = (inside[0], inside[-1]) if inside else (0, 0)
    if not 0 <= i0 < i1 < len(rows):
        raise RuntimeError(f"no two rows of hot.js's counters inside the span ({i0}, {i1} of {len(rows)})")
    a, b = rows[i0], rows[i1]
    dt = b["t"] - a["t"]
    return {"functionA": 100 * (b["a"] - a["a"]) / dt, "functionB": 100 * (b["b"] - a["b"]) / dt,
            "window_s": dt / 1e9}


def shares(p) -> tuple[dict, int]:
    """% of the main thread's samples whose stack holds functionA / functionB, of those samples whose
    JS stack the module can see (and, as "kernel_jit", % of them it cannot; their number is returned).

    A tick that finds node in the kernel with its user pc in JIT code (an interrupt or fault taken in
    JS: JIT code makes no system calls) has no user frame pointer to walk without guru mode, so its
    sample is the pc under a ``[kernel]`` leaf (sampler.stp): the JS function it interrupted is not
    named.  On hardware that is a fraction of a percent; under TCG the guest kernel's (emulated)
    interrupt handling took 0-11.7 % of node's main-thread samples in 35 captures (mostly 1.5-4 %,
    8-12 % at host load 10-12), and hot.js's clock gives that time to the function the interrupt
    stopped (A or B, 85 % of the time).  Counted as neither, they lowered A and B by their share of
    them (3.8 % of the samples: a 62 % A read as 59.7 %).  Interrupts arrive independently of which
    JS function runs, so these samples
    are spread like the JS time they stopped: they are left out of the denominator, not given to a
    function.  A tick in the kernel at any other pc (a system call from node's C++ or libc: the
    event loop, the stats lines hot.js writes) is time hot.js counts outside A and B, and stays."""
    import numpy as np
    s = p.samples
    sel = (s["thread"].astype(str) == "main").to_numpy()
    w = s["weight"].to_numpy()[sel]
    stacks = s["stack"].to_numpy()[sel]
    prefix, sframe = p.stacks["prefix"].to_numpy(), p.stacks["frame"].to_numpy()
    ffunc = p.frames["func"].to_numpy()
    names = p.funcs["name"].astype(str).to_numpy()
    holds = {}
    for st in np.unique(stacks).tolist():
        k, seen = st, set()
        while k >= 0:
            seen.add(names[ffunc[sframe[k]]])
            k = prefix[k]
        holds[st] = seen
    blind = np.fromiter((holds[x] >= {"[kernel]", "[jit]"} for x in stacks.tolist()), bool, len(stacks))
    n = w.sum() - w[blind].sum()
    out = {}
    for fn in ("functionA", "functionB"):
        hit = np.fromiter((fn in holds[x] for x in stacks.tolist()), bool, len(stacks))
        out[fn] = 100 * w[hit & ~blind].sum() / n if n else 0.0
    out["kernel_jit"] = 100 * w[blind].sum() / w.sum() if w.sum() else 0.0
    return out, int(w.sum())


def hot_names() -> set:
    src = HOT.read_text()
    names = set(re.findall(r"function\s+(\w+)\s*\(", src))
    names |= set(re.findall(r"const\s+(\w+)\s*=\s*(?:\([^)]*\)|\w+)\s*=>", src))
    return names | {"(anonymous)"}


def named_right(p, guest_hot="/tmp/hot.js") -> tuple[float, int, dict]:
    """Share of the samples with a JS frame whose innermost JS frame is a function of hot.js (by its
    name, in the file the guest ran) or node's own JS (node: files), their number, the wrong ones."""
    import numpy as np
    f = p.funcs
    names = f["name"].astype(str).to_numpy(object)
    files = f["file"].astype(str).to_numpy(object)
    is_js = f["kind"].astype(str).isin(["js", "node", "deps"]).to_numpy()
    pre, sframe, ffunc = p.stacks["prefix"].to_numpy(), p.stacks["frame"].to_numpy(), p.frames["func"].to_numpy()
    inner = np.full(len(pre), -1, np.int64)
    for i in range(len(pre)):
        fid = ffunc[sframe[i]]
        inner[i] = fid if is_js[fid] else (inner[pre[i]] if pre[i] >= 0 else -1)
    leaf = inner[p.samples["stack"].to_numpy().astype(np.int64)]
    w = p.samples["weight"].to_numpy()[leaf >= 0]
    leaf = leaf[leaf >= 0]
    good = hot_names()
    right, wrong = 0, {}
    for fid, wt in zip(leaf.tolist(), w.tolist()):
        # hot.js's functions in the file the guest ran; node's own JS; V8 builtins with no script
        ok = ((names[fid] in good and files[fid] == guest_hot) or files[fid].startswith("node:")
              or (files[fid] == "" and names[fid] not in good))
        right += wt if ok else 0
        if not ok:
            wrong[(names[fid], files[fid])] = wrong.get((names[fid], files[fid]), 0) + wt
    n = int(w.sum())
    return (right / n if n else float("nan")), n, wrong


def analyse(res: dict) -> dict:
    from nodeflame.capture import stap as st
    share, root = Path(res["share"]), res["root"]
    pid = int((share / "pid").read_text())
    aspace = st.offline_address_space((share / "maps").read_text(), GUEST_NODE, root)
    text = (share / "out.raw").read_text(errors="surrogateescape")
    p = st.parse_output(text, pid=pid, aspace=aspace, source="<guest stap>")
    out = {"samples": int(p.samples["weight"].sum()), "header": [h for h in text.splitlines() if h.startswith("#")]}
    out["named_right"], out["js_samples"], out["wrong"] = named_right(p)
    out["shares"], out["main_samples"] = shares(p)
    # the module stops sampling once staprun has its SIGINT ("int"); it prints, and exits, seconds later
    # under TCG ("stop"), while node runs on unsampled
    out["truth"] = truth(share, stop="int")
    names = p.funcs["name"].astype(str)
    out["node_start"] = bool(names.str.contains("node::Start").any())
    out["native_examples"] = sorted(set(names[p.funcs["kind"].astype(str) == "native"]))[:8]
    out["profile"] = p
    rec = share / "rec.nfprof"
    if rec.exists():
        import nodeflame as nf
        q = nf.read(str(rec))
        r = {"samples": int(q.samples["weight"].sum()), "backend": q.meta.get("backend"),
             "stap_module": q.meta.get("stap_module"), "warnings": q.meta.get("warnings")}
        r["named_right"], r["js_samples"], r["wrong"] = named_right(q)
        r["shares"], r["main_samples"] = shares(q)
        r["truth"] = truth(share, "start2", "stop2",
                           window=(q.meta.get("stap_running_since") or q.meta["start_time"],
                                   q.meta["duration_ns"] / 1e9))
        r["node_start"] = bool(q.funcs["name"].astype(str).str.contains("node::Start").any())
        out["record"] = r
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--node", default="/usr/bin/node")
    ap.add_argument("--duration", type=float, default=DURATION)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--keep", help="share directory (kept)")
    a = ap.parse_args(argv)
    res = run(node=a.node, duration=a.duration, record=not a.no_record, share=a.keep and Path(a.keep))
    out = analyse(res)
    out.pop("profile")
    print(json.dumps({**res, **out}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
