"""The TCP sender and receiver of the bandwidth tests, run inside test namespaces.

``recv PORT SKIP [DRAINED_BELOW [WINDOW]]`` and ``send HOST PORT SECONDS``: the command line of
``conformance/throughput.py``, which holds the code (the CRI lane measures with it too);
this file only makes it importable when run as ``python -I tests/bw_traffic.py`` (``-I``
puts neither the script's directory nor the project on ``sys.path``).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from conformance.throughput import main

    main(sys.argv[1:])
