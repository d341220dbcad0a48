#!/bin/bash
# Undo install.sh. Keeps the state (/var/lib/forcepw) unless --purge.
# Order matters: PAM stops calling the module first, then the module goes,
# then the daemon (which the module would only fail open on anyway).
set -euo pipefail

PREFIX=/opt/forcepw
UNIT_DIR=/usr/local/lib/systemd/system
PAM_PROFILE=/usr/share/pam-configs/forcepw
PIDFILE=/run/forcepwd.pid

purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        -h|--help) echo "usage: $0 [--purge]   (--purge also deletes /var/lib/forcepw, /etc/forcepw and /var/log/forcepw.log)"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh must run as root (sudo ./uninstall.sh)" >&2
    exit 1
fi
say() { printf '==> %s\n' "$*"; }

if [ -f "$PAM_PROFILE" ]; then
    say "pam-auth-update --package --remove forcepw"
    DEBIAN_FRONTEND=noninteractive pam-auth-update --package --remove forcepw </dev/null
    rm -f "$PAM_PROFILE"
fi
if grep -qs pam_forcepw /etc/pam.d/common-account /etc/pam.d/common-password; then
    echo "WARNING: /etc/pam.d/common-* still name pam_forcepw (edited by hand?); remove those lines yourself" >&2
fi

say "removing pam_forcepw.so"
for f in /lib/*/security/pam_forcepw.so /usr/lib/*/security/pam_forcepw.so \
         /lib/security/pam_forcepw.so /usr/lib/security/pam_forcepw.so; do
    [ -e "$f" ] && rm -f "$f"
done

if [ -d /run/systemd/system ]; then
    say "stopping and disabling forcepwd.service and forcepwd.socket"
    systemctl disable --now forcepwd.service forcepwd.socket forcepwd-root.socket 2>/dev/null || true
fi
if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q forcepwd; then
        say "stopping the forcepwd started by install.sh (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$PIDFILE"
fi
if [ ! -d /run/systemd/system ]; then
    rmdir /run/forcepw 2>/dev/null || true  # left empty by a daemon that bound its own socket
fi
rm -f "$UNIT_DIR/forcepwd.socket" "$UNIT_DIR/forcepwd-root.socket" "$UNIT_DIR/forcepwd.service"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

say "removing $PREFIX, the command links and the docs"
rm -f /usr/local/sbin/forcepwd /usr/local/bin/forcepwctl
rm -rf "$PREFIX" /usr/share/doc/forcepw

if [ "$purge" = 1 ]; then
    say "--purge: removing /var/lib/forcepw, /etc/forcepw and /var/log/forcepw.log"
    rm -rf /var/lib/forcepw /etc/forcepw /var/log/forcepw.log
else
    echo "kept the state in /var/lib/forcepw (uninstall.sh --purge deletes it)"
fi
echo "forcepw is uninstalled."
