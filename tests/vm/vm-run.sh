#!/bin/bash
# vm-run.sh 'COMMAND' — run COMMAND as root inside a throwaway VM on Debian's stock kernel
# (which has 802.1Q, VLAN-filtering bridges, ipvlan, dummy: all missing from the project VM's kernel).
# The VM sees this machine's root read-only over 9p, with tmpfs on /tmp /run /var/run /var/lib/cni
# /etc/cni /var/tmp /dev/shm, and the current directory writable at the same path. Output of
# COMMAND is printed; exit status is COMMAND's. Software emulation (TCG): boots in ~10 s, runs
# ~5-10x slower. The kernel package is downloaded once (apt-get download) into $VM_WORK.
# Used by the VM lane (tests/vm/lane.py); from the project's shared tools, plus: the work
# directory may live under /tmp, /dev/stdin & co exist, lo is up, PATH is set, and the nftables
# bridge-family, traffic-control, tun and ifb modules are loaded.
set -euo pipefail
cmd=${1:?usage: vm-run.sh COMMAND}
work=${VM_WORK:-/var/tmp/vm-lane}
mkdir -p "$work"
need() { command -v "$1" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need qemu-system-x86_64 qemu-system-x86; need cpio cpio; need modinfo kmod; need busybox busybox-static; need xz xz-utils
# The stock kernel, downloaded once; several vm-run.sh at once share it (flock).
(
  flock 9
  if [ ! -d "$work/kernel/boot" ]; then
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    if [ -z "$pkg" ]; then apt-get update -qq; pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); fi
    dl=$(mktemp -d "$work/dl.XXXXXX")
    (cd "$dl" && apt-get download "$pkg" >/dev/null && dpkg-deb -x linux-image-*.deb kernel)
    mv "$dl/kernel" "$work/kernel"; rm -rf "$dl"
  fi
) 9>"$work/.lock"

kver=$(ls "$work/kernel/lib/modules" | head -1)
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -1)
rd=$(mktemp -d); initrd=$(mktemp --suffix=.initrd.cpio); trap 'rm -rf "$rd" "$initrd"' EXIT
mkdir -p "$rd"/{bin,proc,sys,dev,host,mods}
cp "$(command -v busybox)" "$rd/bin/busybox"
for c in sh insmod mount mkdir chroot poweroff cat echo ln ip; do ln -s busybox "$rd/bin/$c"; done
# wanted modules; their dependencies are resolved with modinfo and loaded first
want="virtio_pci 9pnet_virtio 9p 8021q bridge br_netfilter ipvlan dummy veth macvlan vxlan tun ifb vrf sch_tbf sch_ingress act_mirred cls_u32 cls_matchall nf_tables nft_meta_bridge nf_conntrack_bridge nft_reject_bridge nft_chain_nat nft_masq nft_fib_inet nft_ct nft_compat nft_nat nft_redir nft_reject_inet nf_conntrack_netlink iptable_nat iptable_filter ip6table_nat ip6table_filter xt_nat xt_MASQUERADE xt_addrtype xt_comment xt_multiport xt_mark xt_conntrack crc32c_generic"
moddir="$work/kernel/lib/modules/$kver"
# The modules, dependencies first, decompressed once per kernel and module list (resolving
# them with modinfo and unpacking them took ~30 s per run under load).
modcache="$work/mods-$kver-$(echo "$want" | md5sum | cut -c1-12)"
(
  flock 9
  if [ ! -f "$modcache/order" ]; then
    tmp=$(mktemp -d "$work/mods.XXXXXX")
    order=$(python3 - "$moddir" $want <<'PY'
import os, subprocess, sys
root, want = sys.argv[1], sys.argv[2:]
paths = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".ko") or f.endswith(".ko.xz"):
            paths[f.split(".ko")[0].replace("-", "_")] = os.path.join(d, f)
seen, order = set(), []
def visit(m):
    m = m.replace("-", "_")
    if m in seen or m not in paths: return
    seen.add(m)
    deps = subprocess.run(["modinfo", "-F", "depends", paths[m]], capture_output=True, text=True).stdout.strip()
    for dep in filter(None, deps.split(",")): visit(dep)
    order.append(m)
for m in ["crc32c_generic"] + want: visit(m)
print(" ".join(f"{m}:{paths[m]}" for m in order))
PY
)
    names=""
    for e in $order; do
      m=${e%%:*}; f=${e#*:}
      case $f in *.xz) xz -dc "$f" > "$tmp/$m.ko";; *) cp "$f" "$tmp/$m.ko";; esac
      names="$names $m"
    done
    echo "$names" > "$tmp/order"
    rm -rf "$modcache"; mv "$tmp" "$modcache"
  fi
) 9>"$work/.lock"
cp "$modcache"/*.ko "$rd/mods/"
order=$(cat "$modcache/order")
here=$(pwd)
printf '%s\n' "$cmd" > "$rd/cmd"
cat > "$rd/init" <<INIT
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $order; do insmod /mods/\$m.ko 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=524288 host /host
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
# devtmpfs has no /dev/fd, /dev/stdin...: bash's <(...) and tools reading /dev/stdin need them.
ln -s /proc/self/fd /host/dev/fd; ln -s /proc/self/fd/0 /host/dev/stdin
ln -s /proc/self/fd/1 /host/dev/stdout; ln -s /proc/self/fd/2 /host/dev/stderr
mkdir -p /host/dev/shm /host/dev/pts; mount -t tmpfs tmpfs /host/dev/shm; mount -t devpts devpts /host/dev/pts
ip link set lo up
for d in /tmp /run /var/run /var/lib/cni /etc/cni /var/tmp; do mount -t tmpfs tmpfs /host\$d 2>/dev/null; done
mkdir -p /host/run/netns
mkdir -p "/host$here"   # a work directory under /tmp is inside the tmpfs just mounted
mount -t 9p -o trans=virtio,version=9p2000.L,rw,cache=loose,msize=524288 work "/host$here"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
cp /cmd /host/tmp/.vm-cmd
chroot /host /bin/bash -c 'cd "$here"; bash /tmp/.vm-cmd; echo "VM-EXIT \$?"'
sync; poweroff -f
INIT
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc 2>/dev/null > "$initrd")  # uncompressed: gzip took seconds, the kernel unpacks either
out=$(mktemp)
timeout "${VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "${VM_MEM:-2048}" -nographic -no-reboot -nic none \
  -kernel "$vmlinuz" -initrd "$initrd" \
  -virtfs local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$here,mount_tag=work,security_model=passthrough,multidevs=remap" \
  -append "console=ttyS0 panic=-1 quiet loglevel=0 mitigations=off" > "$out" 2>&1 || true
tr -d '\r' < "$out" | sed -n '/Booting from ROM/,$p' | sed '1d' | grep -v 'reboot: Power down' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
rc=$(tr -d '\r' < "$out" | sed -n 's/.*VM-EXIT \([0-9]*\).*/\1/p' | tail -1); rm -f "$out"
exit "${rc:-99}"
