#!/bin/bash
# Install forcepw on this machine (Debian 12): the daemon in a venv, the PAM
# module, the pam-auth-update profile and the systemd units; then start the
# daemon and check that it answers. Safe to run again.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/opt/forcepw
VENV=$PREFIX/venv
UNIT_DIR=/usr/local/lib/systemd/system
PAM_PROFILE=/usr/share/pam-configs/forcepw
SOCKET=/run/forcepw/forcepwd.sock
LOG=/var/log/forcepw.log
# Written by this script (not by the daemon) when there is no systemd, so
# that a re-install or uninstall.sh can stop exactly the daemon it started.
PIDFILE=/run/forcepwd.pid
APT_PACKAGES=(gcc make libc6-dev libpam0g-dev libpam-runtime python3 python3-venv python3-dev
              libsystemd-dev pkg-config)

done_steps=()
say() { printf '==> %s\n' "$*"; }
did() { done_steps+=("$*"); }

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh must run as root (sudo ./install.sh)" >&2
    exit 1
fi
cd "$SRC"

"$SRC/scripts/ensure-packages.sh" "${APT_PACKAGES[@]}"

# Debian's python, never one from pyenv or elsewhere on PATH: the daemon must
# keep working whatever happens to a user's toolchain.
if [ -x "$VENV/bin/python" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
    say "$VENV was not made with /usr/bin/python3; recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    mkdir -p "$PREFIX"
    /usr/bin/python3 -m venv "$VENV"
fi
say "pip install forcepw[systemd] into $VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install -q --disable-pip-version-check --upgrade "$SRC[systemd]" sdnotify
ln -sfn "$VENV/bin/forcepwd" /usr/local/sbin/forcepwd
ln -sfn "$VENV/bin/forcepwctl" /usr/local/bin/forcepwctl
did "installed the Python package into $VENV; /usr/local/sbin/forcepwd, /usr/local/bin/forcepwctl"

if [ ! -e /etc/forcepw/forcepwd.conf ]; then
    install -d -m 0755 /etc/forcepw
    install -m 0644 "$SRC/etc/forcepwd.conf" /etc/forcepw/forcepwd.conf
    did "installed the settings file /etc/forcepw/forcepwd.conf (all defaults; re-read on SIGHUP)"
fi

say "building and installing pam_forcepw.so"
module_build=$(mktemp -d)
make -C "$SRC/pam_forcepw" OUT="$module_build" install
rm -rf "$module_build"
did "built and installed pam_forcepw.so (make -C pam_forcepw install)"

install -d -m 0755 /usr/share/doc/forcepw
install -m 0644 "$SRC/docs/design.md" /usr/share/doc/forcepw/design.md
install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$SRC/systemd/forcepwd.socket" "$SRC/systemd/forcepwd-root.socket" \
    "$SRC/systemd/forcepwd.service" "$UNIT_DIR/"
did "installed forcepwd.socket, forcepwd-root.socket and forcepwd.service into $UNIT_DIR"

# Does something answer on the socket? Any well-formed reply counts, an error
# reply included: it proves a forcepwd is listening and speaking the protocol.
daemon_answers() {
    # Any answer at all (even "Access denied") proves the daemon is there.
    local status=0
    "$VENV/bin/forcepwctl" --socket "$SOCKET" --output=json list >/dev/null 2>&1 || status=$?
    [ "$status" -ne 3 ]  # forcepwctl's exit status when it cannot reach the daemon
}

wait_for_daemon() {
    for _ in $(seq 1 50); do
        daemon_answers && return 0
        sleep 0.2
    done
    return 1
}

if [ -d /run/systemd/system ]; then
    say "systemd is PID 1: enabling forcepwd.socket and forcepwd.service"
    systemctl daemon-reload
    systemctl enable forcepwd.socket forcepwd-root.socket forcepwd.service
    systemctl start forcepwd.socket forcepwd-root.socket
    # restart, not start: a re-install must run the code just installed.
    systemctl restart forcepwd.service
    how_started="started by systemd (systemctl status forcepwd.service; journalctl -u forcepwd)"
    did "enabled and (re)started forcepwd.socket and forcepwd.service under systemd"
else
    say "PID 1 is not systemd: the units are installed but cannot be used here."
    ours=""
    if [ -f "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE")
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q forcepwd; then
            ours=$pid
        fi
    fi
    if [ -n "$ours" ]; then
        say "stopping the forcepwd this script started before (pid $ours) to run the new code"
        kill -TERM "$ours"
        for _ in $(seq 1 50); do kill -0 "$ours" 2>/dev/null || break; sleep 0.2; done
        rm -f "$PIDFILE"
    fi
    if daemon_answers; then
        say "a forcepwd not started by this script already answers on $SOCKET; not starting another"
        how_started="a forcepwd that install.sh did not start was already running: left as it is"
    else
        say "starting forcepwd in the background WITHOUT systemd (no restart on crash, not started at boot)"
        # The log names flagged users and reasons: root's alone, like the state.
        (umask 077 && touch "$LOG" && chmod 0600 "$LOG")
        setsid nohup /usr/local/sbin/forcepwd >>"$LOG" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
        how_started="started in the background without systemd, pid $(cat "$PIDFILE"), log $LOG; it is NOT restarted on crash nor started at boot"
        did "started forcepwd in the background (pid $(cat "$PIDFILE"), log $LOG)"
    fi
fi

say "checking that forcepwd answers on $SOCKET"
if ! wait_for_daemon; then
    echo "install.sh: forcepwd does not answer on $SOCKET" >&2
    if [ -d /run/systemd/system ]; then
        systemctl --no-pager status forcepwd.service >&2 || true
    else
        tail -n 20 "$LOG" >&2 || true
    fi
    exit 1
fi

# PAM last: the daemon is up before any login asks it. (Were it down, the
# module would fail open anyway: see docs/design.md.)
say "enabling the PAM profile with pam-auth-update"
install -m 0644 "$SRC/pam-configs/forcepw" "$PAM_PROFILE"
DEBIAN_FRONTEND=noninteractive pam-auth-update --package --enable forcepw </dev/null
if grep -q pam_forcepw /etc/pam.d/common-account && grep -q pam_forcepw /etc/pam.d/common-password; then
    did "enabled the forcepw PAM profile ($PAM_PROFILE) in /etc/pam.d/common-account and common-password"
    pam_state="enabled in /etc/pam.d/common-account and /etc/pam.d/common-password"
else
    pam_state="NOT enabled (see the warning above)"
    cat >&2 <<EOF

WARNING: pam-auth-update did not add pam_forcepw to /etc/pam.d/common-*. It refuses
to touch files that were edited by hand. Either add these lines yourself (account
line to common-account, password line to common-password, after pam_unix):

$(/usr/local/bin/forcepwctl pam-lines 2>/dev/null || printf '%s\n' \
    'account [success=ok new_authtok_reqd=done default=ignore] pam_forcepw.so' \
    'password [success=ok default=ignore] pam_forcepw.so')

or let pam-auth-update regenerate them: pam-auth-update --force

EOF
fi

echo
echo "forcepw is installed:"
for step in "${done_steps[@]}"; do echo "  - $step"; done
echo "  daemon: answers on $SOCKET; $how_started"
echo "  PAM: $pam_state"
echo "  state: /var/lib/forcepw"
echo "Try: forcepwctl forcepasswordchange users_json='{\"alice\":1}'"
