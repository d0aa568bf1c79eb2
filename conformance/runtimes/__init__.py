"""Real container runtimes driving CNI plugins, run privately (nothing of the machine changes).

- ``commands``: running commands, retries, cleanup steps (what every runtime module uses).
- ``mounts``: a private mount namespace kept alive by one process (``PrivateMounts``).
- ``image``: a busybox root filesystem and OCI image made offline from Debian's busybox-static.
- ``kernelstate``: free subnets and ports, and what the kernel holds (links, rules, leases).
- ``containerd``: a private containerd daemon (``ctr`` and, optionally, its CRI plugin).
- ``node``: a Kubernetes-like node: a network namespace with an address and an "outside".
- ``cri_schema`` / ``cri_client``: the CRI API read from containerd's binary, and a client.
- ``cri_lane``: the CRI lane's pods and what must hold of them (``conformance/lanes``).
"""
