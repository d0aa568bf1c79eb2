"""cni-py's conformance harness, demo and benchmarks (see README)."""
