"""Unit tests of the native VMM's layers: fakes only, no /dev/kvm, no gcc."""

from __future__ import annotations

import sys
from pathlib import Path

GUESTS = Path(__file__).resolve().parents[2] / "guests"
if str(GUESTS) not in sys.path:
    sys.path.insert(0, str(GUESTS))
