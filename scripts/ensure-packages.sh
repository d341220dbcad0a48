#!/bin/bash
# Install the Debian packages given that are not installed yet:
#   scripts/ensure-packages.sh [--no-start-services] PKG...
# --no-start-services keeps the packages' postinst from starting their services (openssh-server
# would start a system sshd on port 22) with a temporary policy-rc.d, unless one is in place.
set -euo pipefail

no_start=0
if [ "${1:-}" = --no-start-services ]; then
    no_start=1
    shift
fi
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -gt 0 ] || exit 0

echo "==> apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [ "$no_start" = 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from forcepw scripts/ensure-packages.sh\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
