"""The default guest image, built offline from Debian packages and cached by content.

"tiny" is a Debian cloud kernel with an initramfs of busybox, the virtio modules and the stock
qemu-guest-agent. ``build_image()`` returns it from the cache under ``image_dir()``, rebuilding only when
an input changed (exact package versions, the guest files, the builder) or a cached artifact is damaged.
"""

from virtkit.images.build import KNOWN_IMAGES, build_image, list_images
from virtkit.images.store import Image

__all__ = ["KNOWN_IMAGES", "Image", "build_image", "list_images"]
