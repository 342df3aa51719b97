"""virtkitd with the process-backed fake engine: ``python -m tests.support.fake_daemon [virtkitd flags]``.

The shipped daemon has no switch that selects a fake; this test-owned entry point hands it one, as the
explicit ``engine_factory`` and ``images`` arguments of :func:`virtkit.daemon.main.main` (an image resolver
that builds nothing). The daemon's supervisors import it
by that name, so the checkout's root must be on their PYTHONPATH (tests.support.daemon sees to that).
"""

from __future__ import annotations

import sys

from tests.support.fake_engine import fake_image
from virtkit.daemon.main import main
from virtkit.spec.resolve import BootImage

ENGINE = "tests.support.fake_engine:FakeEngine"


def fake_boot_image(name: str) -> BootImage:
    img = fake_image(name)
    return BootImage(img.kernel, img.initrd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], engine_factory=ENGINE, images=fake_boot_image))
