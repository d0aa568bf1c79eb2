#!/bin/bash
# Idempotent machine setup for `make demo` / `make test` on Debian 12, as root:
# installs the Debian packages the suite and its tests use, then the project virtualenv.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every Debian package a test, the demo or the benchmark uses.
PACKAGES=(
  iproute2            # ip netns / ip link, used by tests and the demo
  python3 python3-venv python3-pip
  nftables iptables   # firewall backends (bridge ipMasq, portmap)
  containernetworking-plugins   # reference plugins in /usr/lib/cni: differential tests, benchmark
  golang-go golang-github-appc-cni-dev  # the harness's libcni driver, built offline
  busybox-static      # tiny servers inside test namespaces
  podman runc containerd  # real runtimes driving our plugins end to end (tests/test_runtimes.py)
  iputils-ping        # the demo's ping
  procps              # sysctl, ps
  libpython3.11 binutils   # PyInstaller: the shared libpython it bundles, strip/objdump
  gcc libc6-dev libpython3.11-dev libexpat1-dev zlib1g-dev  # build/freeze.py: our bootloader, libpython linked in
  make git
  qemu-system-x86 cpio kmod xz-utils  # the VM lane (tests/vm): tests needing kernel features this host lacks
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The interpreter the plugins run on: Debian's own (what a fresh Debian 12 machine has).
PY=${PYTHON:-/usr/bin/python3}
if [ ! -x .venv/bin/python3 ] || ! .venv/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test,build]'
  touch "$stamp"
fi
