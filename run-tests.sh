#!/bin/bash
# Run the whole test suite: sudo ./run-tests.sh [pytest arguments...]
# Installs what the tests need on Debian 12, makes .venv with Debian's python
# and runs pytest. Needs no install.sh: the tests start their own forcepwd from
# this tree and load a pam_forcepw.so built from this tree.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=$SRC/.venv
APT_PACKAGES=(openssh-server openssh-client pamtester gcc make libc6-dev libpam0g-dev libpam-runtime
              python3 python3-venv python3-dev libsystemd-dev pkg-config passwd login util-linux
              debootstrap systemd-container)

if [ "$(id -u)" -ne 0 ]; then
    echo "run-tests.sh must run as root (sudo ./run-tests.sh): the tests create users and start sshd" >&2
    exit 1
fi
cd "$SRC"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # openssh-server's postinst would start a system sshd on port 22; the tests
    # run their own sshd on a private port, so keep the packages' services from
    # starting with a temporary policy-rc.d (unless one is already in place).
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from forcepw run-tests.sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$own_policy" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

# Debian's python, never one from pyenv or elsewhere on PATH.
if [ -x "$VENV/bin/python" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
    echo "==> $VENV was not made with /usr/bin/python3; recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    /usr/bin/python3 -m venv "$VENV"
fi
echo "==> pip install -e '.[test,systemd]'"
"$VENV/bin/pip" install -q --disable-pip-version-check -e "$SRC[test,systemd]"

exec "$VENV/bin/python" -m pytest -v tests "$@"
