"""The firewall plugin (chained): forwarded traffic of the container accepted, after the
administrator's chain, and the ingress policy of its bridge."""
