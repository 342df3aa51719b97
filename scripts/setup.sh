#!/usr/bin/env bash
# Set up virtkit on a fresh Debian/Ubuntu machine, then run the main job or the tests.
#   bash scripts/setup.sh run [-- virtkit run args]   install, then `virtkit run` on the default guest
#   bash scripts/setup.sh test [pytest args]          install, then ruff, mypy and the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-run}
shift || true

APT_PACKAGES=(
  qemu-system-x86 qemu-utils        # the QEMU engine, qemu-img
  busybox-static cpio                # the default guest image
  dnsmasq-base nftables iproute2     # virtual networks (DHCP/DNS, NAT, namespaces in tests)
  e2fsprogs acpica-tools             # disk images; ACPI table checks
  gcc make libc6-dev                 # small test kernels for the native engine
  python3-venv python3-dev
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

case "$what" in
  run)
    exec .venv/bin/virtkit run "$@"
    ;;
  test)
    echo "setup: ruff" >&2
    .venv/bin/ruff check src tests bench
    echo "setup: mypy" >&2
    .venv/bin/mypy
    echo "setup: pytest" >&2
    exec .venv/bin/python -m pytest -m "" "$@"
    ;;
  *)
    echo "usage: bash scripts/setup.sh run|test [args]" >&2
    exit 2
    ;;
esac
