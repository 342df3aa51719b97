"""virtkitd with the process-backed fake engine: ``python -m tests.support.fake_daemon [virtkitd flags]``.

The shipped daemon has no switch that selects a fake; this test-owned entry point hands it one, as the
explicit ``engine_factory`` argument of :func:`virtkit.daemon.main.main`. The daemon's supervisors import it
by that name, so the checkout's root must be on their PYTHONPATH (tests.support.daemon sees to that).
"""

from __future__ import annotations

import sys

from virtkit.daemon.main import main

ENGINE = "tests.support.fake_engine:FakeEngine"
# Until the daemon takes its image builder as an argument too, the fake one is named by the variable that
# Service._resolve reads.
IMAGE = "tests.support.fake_engine:fake_image"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], engine_factory=ENGINE))
