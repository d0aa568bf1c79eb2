"""The bandwidth plugin (chained): TBF shaping of a veth-attached container."""
