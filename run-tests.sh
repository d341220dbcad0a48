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
              debootstrap systemd-container libnss-wrapper iproute2)

if [ "$(id -u)" -ne 0 ]; then
    echo "run-tests.sh must run as root (sudo ./run-tests.sh): the tests create users and start sshd" >&2
    exit 1
fi
cd "$SRC"

# The tests run their own sshd on a private port: no system sshd is started by the install.
"$SRC/scripts/ensure-packages.sh" --no-start-services "${APT_PACKAGES[@]}"

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
