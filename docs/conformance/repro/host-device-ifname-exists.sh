#!/bin/sh
# host-device (Debian 1.1.1): with CNI_IFNAME already present in the container, ADD moves the
# host's NIC into the container, fails to rename it, and leaves it there; every DEL then fails,
# so the NIC never comes back. Run as root; cleans up after itself.
set -u
H=repro-hd-h; C=repro-hd-c
cleanup() { ip netns delete $C 2>/dev/null; ip netns delete $H 2>/dev/null; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
ip netns add $H; ip netns add $C; ip -n $H link set lo up
ip -n $H link add nic0 type veth peer name nic0p; ip -n $H link set nic0 up; ip -n $H link set nic0p up
ip -n $C link add eth0 type veth peer name other0      # the container's own eth0
CONF='{"cniVersion":"1.0.0","name":"hd-net","type":"host-device","device":"nic0"}'
for V in ADD DEL DEL; do
  echo "$V:"; echo "$CONF" | env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=$V CNI_CONTAINERID=c1 \
    CNI_NETNS=/var/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni ip netns exec $H /usr/lib/cni/host-device | tr -d '\n'; echo
  echo "  container links: $(ip -n $C -br link | awk '{print $1}' | tr '\n' ' ')  host links: $(ip -n $H -br link | awk '{print $1}' | tr '\n' ' ')"
done
