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
  golang-github-containernetworking-plugin-dnsname  # podman's dnsname (3rd-party chained, runs dnsmasq-base): docs/conformance
  golang-go golang-github-appc-cni-dev  # the harness's libcni driver, built offline
  busybox-static      # tiny servers inside test namespaces
  dnsmasq-base        # the DHCP server the dhcp plugin's tests run in a LAN namespace (no service)
  podman runc containerd  # real runtimes driving our plugins end to end (tests/test_runtimes.py)
  iputils-ping        # the demo's ping
  chromium            # headless browser: tests/test_conformance_report.py renders the harness's HTML report
  procps              # sysctl, ps
  gcc libc6-dev libpython3.11-dev libffi-dev zlib1g-dev  # build/standalone.py: libpython, libffi, zlib linked in
  strace              # tests/test_standalone.py: what a plugin file opens
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

# firewalld: the firewall plugin's firewalld backend is tested against a real firewalld that
# the test starts privately (its own D-Bus bus, mount and network namespaces: tests/firewalld_env.py).
# Installing it must never start or enable one on this machine (PID 1 need not be systemd, and
# a machine-wide firewalld would rewrite the host's ruleset): the install runs under a
# policy-rc.d that forbids every service start (the machine's own policy-rc.d, if any, is put
# back afterwards), and is then checked: no firewalld process, the nft ruleset unchanged.
if ! dpkg-query -W -f='${Status}' firewalld 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: firewalld is missing and installing it needs root" >&2
    exit 1
  fi
  echo "setup: installing firewalld (no service started)"
  export DEBIAN_FRONTEND=noninteractive
  ruleset_before=$(nft list ruleset 2>/dev/null | sha256sum)
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$policy" ]; then
    saved=$(mktemp /usr/sbin/.policy-rc.d.cnipy.XXXXXX)
    cp -a "$policy" "$saved"
  fi
  restore_policy() {
    if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# cni-py setup: installing firewalld must start no service\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  apt-get install -y -qq --no-install-recommends firewalld >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends firewalld >/dev/null; }
  restore_policy
  trap - EXIT
  running=$(pgrep -x firewalld || true)
  if [ -n "$running" ]; then
    echo "setup: a firewalld process runs after the install (PIDs: $running); the tests start their own" >&2
    exit 1
  fi
  if [ "$(nft list ruleset 2>/dev/null | sha256sum)" != "$ruleset_before" ]; then
    echo "setup: the machine's nft ruleset changed while installing firewalld" >&2
    exit 1
  fi
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
