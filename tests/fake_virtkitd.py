"""virtkitd for unit tests: the real daemon, with an image resolver that builds nothing injected as an argument.

    python tests/fake_virtkitd.py --home DIR ...      (the same arguments as ``python -m virtkit.daemon``)
"""

from __future__ import annotations

import sys

from virtkit.daemon.fake_engine import fake_image
from virtkit.daemon.main import main
from virtkit.spec.resolve import BootImage


def fake_boot_image(name: str) -> BootImage:
    img = fake_image(name)
    return BootImage(img.kernel, img.initrd)


if __name__ == "__main__":
    sys.exit(main(images=fake_boot_image))
