"""Reliability suite: crash loops, crash-point sweep, power-loss model, fuzzing, slow clients.

Every test here has a short CI version; the long runs are marked ``slow``
(``make test-slow``). Sizes scale with ``GRAVIX_RELIABILITY_SCALE`` (default 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Helpers shared by this suite (relutil) and the server helper one level up.
for _dir in (Path(__file__).parent, Path(__file__).parent.parent):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))
