"""DHCP option names and codes, shared by the plugin (config checks) and the daemon.

The reference accepts six names (``dhcp-client-identifier``, ``subnet-mask``, ``routers``,
``host-name``, ``user-class``, ``vendor-class-identifier``) or a decimal code 0-255; the
upstream docs (cni.dev) show dhclient-style names such as ``classless-static-routes`` and
``dhcp-lease-time`` that the reference then rejects. We accept every name below (dhclient's
names for the RFC 2132 options and the common later ones), case-insensitively, and decimal
codes. Plain data: the plugin imports this on its start-up budget.
"""

from __future__ import annotations

NAMES: dict[str, int] = {
    "subnet-mask": 1, "time-offset": 2, "routers": 3, "time-servers": 4, "ien116-name-servers": 5,
    "domain-name-servers": 6, "log-servers": 7, "cookie-servers": 8, "lpr-servers": 9,
    "impress-servers": 10, "resource-location-servers": 11, "host-name": 12, "boot-size": 13,
    "merit-dump": 14, "domain-name": 15, "swap-server": 16, "root-path": 17, "extensions-path": 18,
    "ip-forwarding": 19, "non-local-source-routing": 20, "policy-filter": 21,
    "max-dgram-reassembly": 22, "default-ip-ttl": 23, "path-mtu-aging-timeout": 24,
    "path-mtu-plateau-table": 25, "interface-mtu": 26, "all-subnets-local": 27,
    "broadcast-address": 28, "perform-mask-discovery": 29, "mask-supplier": 30,
    "router-discovery": 31, "router-solicitation-address": 32, "static-routes": 33,
    "trailer-encapsulation": 34, "arp-cache-timeout": 35, "ieee802-3-encapsulation": 36,
    "default-tcp-ttl": 37, "tcp-keepalive-interval": 38, "tcp-keepalive-garbage": 39,
    "nis-domain": 40, "nis-servers": 41, "ntp-servers": 42, "vendor-encapsulated-options": 43,
    "netbios-name-servers": 44, "netbios-dd-server": 45, "netbios-node-type": 46,
    "netbios-scope": 47, "font-servers": 48, "x-display-manager": 49,
    "dhcp-requested-address": 50, "dhcp-lease-time": 51, "dhcp-option-overload": 52,
    "dhcp-message-type": 53, "dhcp-server-identifier": 54, "dhcp-parameter-request-list": 55,
    "dhcp-message": 56, "dhcp-max-message-size": 57, "dhcp-renewal-time": 58,
    "dhcp-rebinding-time": 59, "vendor-class-identifier": 60, "dhcp-client-identifier": 61,
    "nwip-domain": 62, "nwip-suboptions": 63, "nisplus-domain": 64, "nisplus-servers": 65,
    "tftp-server-name": 66, "bootfile-name": 67, "mobile-ip-home-agent": 68, "smtp-server": 69,
    "pop-server": 70, "nntp-server": 71, "www-server": 72, "finger-server": 73, "irc-server": 74,
    "streettalk-server": 75, "streettalk-directory-assistance-server": 76, "user-class": 77,
    "slp-directory-agent": 78, "slp-service-scope": 79, "fqdn": 81, "relay-agent-information": 82,
    "nds-servers": 85, "nds-tree-name": 86, "nds-context": 87, "client-system": 93,
    "client-ndi": 94, "uuid-guid": 97, "pcode": 100, "tcode": 101, "netinfo-server-address": 112,
    "netinfo-server-tag": 113, "default-url": 114, "subnet-selection": 118, "domain-search": 119,
    "sip-servers": 120, "classless-static-routes": 121, "vivco": 124, "vivso": 125,
    "pxe-undefined-1": 128, "tftp-server-address": 150, "pxe-path-prefix": 210,
    "reboot-time": 211, "ms-classless-static-routes": 249, "wpad": 252,
}

# Options the client itself manages in every message; `request`/`provide` cannot name them.
RESERVED = {0: "pad", 53: "message type", 255: "end"}

# What the reference requests when `request` does not say skipDefault: routers and mask.
# We also ask for what our result carries: DNS servers, domain, search list, classless
# routes, static routes, and the lease times we renew by.
DEFAULT_REQUEST: tuple[int, ...] = (1, 3, 6, 15, 119, 121, 33, 51, 58, 59)


def code_of(name: object) -> int | None:
    """The option code a config's ``option`` string means (a name above, any case, or a
    decimal 0-255), else None. As the reference: a JSON number is not accepted."""
    if not isinstance(name, str):
        return None
    text = name.strip()
    if text.isdigit() and text.isascii():
        n = int(text)
        return n if 0 <= n <= 255 else None
    return NAMES.get(text.lower())
