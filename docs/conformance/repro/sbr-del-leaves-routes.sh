#!/bin/sh
# sbr (Debian 1.1.1): DEL removes its rule but leaves the pod's routes in table 100 (the main
# table stays empty), so the next ADD fails "file exists"; DEL after the namespace is gone
# fails and creates a regular file at the namespace's path. Run as root; cleans up after itself.
set -u
H=repro-sbr-h; C=repro-sbr-c
cleanup() { ip netns delete $C 2>/dev/null; rm -f /var/run/netns/$C; ip netns delete $H 2>/dev/null; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
ip netns add $H; ip netns add $C; ip -n $H link set lo up
ip -n $H link add hv0 type veth peer name eth0 netns $C; ip -n $H link set hv0 up
ip -n $C addr add 10.99.1.5/24 dev eth0; ip -n $C link set eth0 up
ip -n $C route add default via 10.99.1.1
CONF='{"cniVersion":"1.0.0","name":"sbr-net","type":"sbr","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"hv0"},{"name":"eth0","sandbox":"/var/run/netns/'$C'"}],"ips":[{"address":"10.99.1.5/24","gateway":"10.99.1.1","interface":1}]}}'
sbr() { echo "$CONF" | env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=$1 CNI_CONTAINERID=c1 \
  CNI_NETNS=/var/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni ip netns exec $H /usr/lib/cni/sbr 2>/dev/null | tr -d '\n'; echo; }
show() { echo "  rules: $(ip -n $C rule | grep -c 'lookup 100')  main: $(ip -n $C route show table main | tr '\n' ';')  table 100: $(ip -n $C route show table 100 2>/dev/null | tr '\n' ';')"; }
echo "before:"; show
echo "ADD:"; sbr ADD >/dev/null; show
echo "DEL:"; sbr DEL; show
echo "ADD again (same pod):"; sbr ADD
ip netns delete $C
echo "DEL after the pod's namespace is gone:"; sbr DEL
ls -l /var/run/netns/$C
