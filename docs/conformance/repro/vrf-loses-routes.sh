#!/bin/sh
# vrf (Debian 1.1.1): enslaving the pod's eth0 to the VRF loses its default route (not reinstalled in
# the VRF table, not restored by DEL); CHECK passes after DEL. Needs a kernel with VRF (this
# machine's has none: run it in the VM lane, `tests/vm/vm-run.sh "sh docs/conformance/repro/vrf-loses-routes.sh"`).
# Run as root; cleans up after itself.
set -u
H=repro-vrf-h; C=repro-vrf-c
cleanup() { ip netns delete $C 2>/dev/null; ip netns delete $H 2>/dev/null; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
ip netns add $H; ip netns add $C; ip -n $H link set lo up
ip -n $H link add hv0 type veth peer name eth0 netns $C; ip -n $H link set hv0 up
ip -n $C addr add 10.99.3.5/24 dev eth0; ip -n $C link set eth0 up; ip -n $C route add default via 10.99.3.1
PREV='{"cniVersion":"1.0.0","interfaces":[{"name":"hv0"},{"name":"eth0","sandbox":"/var/run/netns/'$C'"}],"ips":[{"address":"10.99.3.5/24","gateway":"10.99.3.1","interface":1}],"routes":[{"dst":"0.0.0.0/0"}]}'
CONF='{"cniVersion":"1.0.0","name":"vrf-net","type":"vrf","vrfname":"vrf-blue","table":1001'
vrf() { echo "$2" | env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=$1 CNI_CONTAINERID=c1 \
  CNI_NETNS=/var/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni ip netns exec $H /usr/lib/cni/vrf | tr -d '\n'; echo " (exit $?)"; }
show() { echo "  links: $(ip -n $C -br link | awk '{print $1}' | tr '\n' ' ')  eth0 master: $(ip -n $C -j link show eth0 | sed -n 's/.*"master":"\([^"]*\)".*/\1/p')  main: $(ip -n $C route show table main | tr '\n' ';')  1001: $(ip -n $C route show table 1001 2>/dev/null | tr '\n' ';')"; }
echo "before:"; show
echo "ADD:"; vrf ADD "$CONF,\"prevResult\":$PREV}" >/dev/null; show
echo "CHECK:"; vrf CHECK "$CONF,\"prevResult\":$PREV}"
echo "DEL without prevResult:"; vrf DEL "$CONF}"; show
echo "CHECK after DEL:"; vrf CHECK "$CONF,\"prevResult\":$PREV}"
echo "DEL again:"; vrf DEL "$CONF}"
echo "DEL after the namespace is gone:"; ip netns delete $C; vrf DEL "$CONF}"
