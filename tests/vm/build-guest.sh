#!/usr/bin/env bash
# Build (or reuse) the Debian guest tree the SystemTap VM test boots under qemu.
#
#   tests/vm/build-guest.sh            -> prints the guest root directory on stdout
#
# The tree lives OUTSIDE the repository, in $NODEFLAME_GUEST_CACHE (default
# ~/.cache/nodeflame/stap-guest/KEY/root), where KEY hashes everything that decides its content:
# the suite, the package list, the mirror and the version of the runtime patch below.  A rerun with
# the same KEY reuses the tree (seconds); a changed list builds a new one next to it.  Needs root
# and debootstrap (apt-get install debootstrap).  A cold build downloads about 350 MB and takes
# 3-5 minutes.
#
# What is in it: Debian 13 (trixie) minbase with its kernel (linux-image-amd64), the headers to
# build modules for it (linux-headers-amd64), systemtap 5.1, gcc, make, elfutils, procps, kmod, and
# python3 with numpy/pandas/tqdm/pyelftools/websocket (so `nodeflame record` can run inside the
# guest from the repository shared over 9p).
#
# The runtime patch (applied here, to the guest's /usr/share/systemtap/runtime):
#   Linux 6.12 split uprobe_unregister() into uprobe_unregister_nosync() and
#   uprobe_unregister_sync().  systemtap 5.1's transport.c looks every kernel symbol its runtime
#   may call up with kallsyms when the module loads, and refuses to load when one is missing:
#   "Can't resolve uprobe_unregister!" -- so on Debian 13 EVERY stap module fails to load, even
#   one with no uprobe at all (systemtap 5.2 knows the new names).  Our script uses timer/perf
#   probes only, never uprobes, so the patch turns that one lookup failure into a warning
#   (the pointer stays NULL and is never called).  Nothing else in the runtime is touched; the
#   generated script runs unmodified.
set -euo pipefail

SUITE=trixie
MIRROR=${NODEFLAME_GUEST_MIRROR:-http://deb.debian.org/debian}
PACKAGES=linux-image-amd64,linux-headers-amd64,systemtap,gcc,make,elfutils,procps,kmod,python3,python3-numpy,python3-pandas,python3-tqdm,python3-pyelftools,python3-websocket
PATCH_VERSION=1

[ "$(id -u)" = 0 ] || { echo "build-guest.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-guest.sh: apt-get install debootstrap" >&2; exit 2; }

KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$PATCH_VERSION" | sha256sum | cut -c1-12)
CACHE=${NODEFLAME_GUEST_CACHE:-${HOME:-/root}/.cache/nodeflame/stap-guest}
DIR=$CACHE/$SUITE-$KEY
ROOT=$DIR/root
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9          # one builder at a time; a second caller waits and then reuses the tree

log() { echo "build-guest: $*" >&2; }

if [ ! -e "$DIR/.bootstrapped" ]; then
  rm -rf "$ROOT" "$DIR/root.tmp"
  log "debootstrap $SUITE into $DIR (a few minutes, once)"
  t0=$(date +%s)
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$DIR/root.tmp" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$DIR/debootstrap.log" >&2; exit 1; }
  rm -rf "$DIR/root.tmp/var/cache/apt/archives/"*.deb
  mv "$DIR/root.tmp" "$ROOT"
  echo "$(( $(date +%s) - t0 ))" >"$DIR/.bootstrapped"
  log "debootstrap took $(cat "$DIR/.bootstrapped") s"
fi

if [ ! -e "$DIR/.patched-$PATCH_VERSION" ]; then
  T=$ROOT/usr/share/systemtap/runtime/transport/transport.c
  [ -e "$T.orig" ] || cp "$T" "$T.orig"
  cp "$T.orig" "$T"
  python3 - "$T" <<'EOF'
import re, sys
path = sys.argv[1]
src = open(path).read()
# systemtap 5.1, _stp_handle_kallsyms_lookups(): every missing symbol is an error that stops the
# module from loading, e.g.
#     kallsyms_uprobe_unregister = (void *)kallsyms_lookup_name("uprobe_unregister");
#     if (kallsyms_uprobe_unregister == NULL) {
#             _stp_error("Can't resolve uprobe_unregister!");
#             goto err0;
#     }
# Make the uprobe_unregister one a warning (the rest stay errors).
pat = re.compile(r'(_stp_error)(\("Can\'t resolve uprobe_unregister!"\);)\s*\n(\s*)goto err0;')
new, n = pat.subn(lambda m: '_stp_warn' + m.group(2) + '  /* nodeflame: Linux 6.12 has no uprobe_unregister; '
                  'unused by timer/perf probes */\n' + m.group(3) + ';', src)
if n != 1:
    sys.exit(f"build-guest.sh: the uprobe_unregister lookup in {path} is not where systemtap 5.1 has it ({n} matches)")
open(path, "w").write(new)
EOF
  touch "$DIR/.patched-$PATCH_VERSION"
  log "patched $T (uprobe_unregister lookup is a warning)"
fi

echo "$ROOT"
