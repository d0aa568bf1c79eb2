#!/bin/sh
# dnsname (Debian 1.3.1): CHECK fails right after ADD; DEL never removes the iptables rule ADD
# inserted; DEL without prevResult leaves dnsmasq running and its directory under
# /run/containers/cni/dnsname. Run as root; cleans up after itself (it kills the dnsmasq left in its host namespace).
set -u
H=repro-dns-h; C=repro-dns-c; NET=repro-dnsname-net
made=$(test -d /run/containers || echo yes)
# Deleting a namespace's name does not end the processes in it: kill the dnsmasq left there first.
cleanup() { for p in $(ip netns pids $H 2>/dev/null); do kill $p; done; ip netns delete $C 2>/dev/null; ip netns delete $H 2>/dev/null; rm -rf /run/containers/cni/dnsname/$NET; if [ "$made" = yes ]; then rmdir -p /run/containers/cni/dnsname 2>/dev/null; fi; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
ip netns add $H; ip netns add $C; ip -n $H link set lo up
ip -n $H link add hv0 type veth peer name eth0 netns $C
ip -n $H addr add 10.99.2.1/24 dev hv0; ip -n $H link set hv0 up
ip -n $C addr add 10.99.2.5/24 dev eth0; ip -n $C link set eth0 up
PREV='{"cniVersion":"1.0.0","interfaces":[{"name":"hv0"},{"name":"eth0","sandbox":"/var/run/netns/'$C'"}],"ips":[{"address":"10.99.2.5/24","gateway":"10.99.2.1","interface":1}]}'
CONF='{"cniVersion":"1.0.0","name":"'$NET'","type":"dnsname","domainName":"dns.podman"'
dnsname() { echo "$2" | env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=$1 CNI_CONTAINERID=c1 \
  CNI_NETNS=/var/run/netns/$C CNI_IFNAME=eth0 CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web" CNI_PATH=/usr/lib/cni \
  ip netns exec $H /usr/lib/cni/dnsname | tr -d '\n'; echo; }
state() { echo "  udp/53 accept rules: $(ip netns exec $H iptables -S INPUT | grep -c 'dport 53')  processes in the host netns: $(ip netns pids $H | wc -l)  state dir: $(ls /run/containers/cni/dnsname/$NET 2>/dev/null | tr '\n' ' ')"; }
echo "ADD:"; dnsname ADD "$CONF,\"prevResult\":$PREV}"; state
echo "CHECK (prevResult = ADD's output, as libcni sends it):"; dnsname CHECK "$CONF,\"prevResult\":$PREV}"
echo "DEL with prevResult:"; dnsname DEL "$CONF,\"prevResult\":$PREV}"; state
echo "ADD, then DEL without prevResult:"; dnsname ADD "$CONF,\"prevResult\":$PREV}" >/dev/null; dnsname DEL "$CONF}"; state
