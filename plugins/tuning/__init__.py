"""The tuning plugin (chained): sysctls and link attributes of the container interface."""
