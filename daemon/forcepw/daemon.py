"""forcepwd: the daemon. A new-style daemon (systemd's daemon(7)): foreground, logs to stderr or
the journal, takes its socket from socket activation when given one, tells systemd when it is
ready, pings the watchdog while its store answers, and exits cleanly on SIGTERM."""

import argparse
import asyncio
import logging
import os
import signal
import socket
import stat
import sys

import sdnotify

from . import config, protocol
from .operations import Operations
from .server import Server
from .store import Store, StoreError

log = logging.getLogger("forcepwd")

STATE_DIR = "/var/lib/forcepw"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="forcepwd", description=__doc__.split(".")[0] + ".")
    parser.add_argument("--socket", default=protocol.SOCKET_PATH,
                        help="public socket (mode 0666) when not socket-activated "
                             "(default %(default)s)")
    parser.add_argument("--root-socket", default=protocol.ROOT_SOCKET_PATH,
                        help="root-only socket (mode 0600) for the PAM module and root, when not "
                             "socket-activated (default %(default)s)")
    parser.add_argument("--state-dir", default=STATE_DIR, help="default %(default)s")
    parser.add_argument("--config", default=config.CONFIG_PATH,
                        help="settings file, re-read on SIGHUP (default %(default)s)")
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


class OneLineFormatter(logging.Formatter):
    """Every record is one line: user names, PAM items and reasons come from clients, and a
    newline in one must not forge a log line of its own."""

    _ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
    _ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})  # line breaks to some readers

    def format(self, record):
        return super().format(record).translate(self._ESCAPES)


def setup_logging(debug):
    level = logging.DEBUG if debug else logging.INFO
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler
            handler = JournalHandler(SYSLOG_IDENTIFIER="forcepwd")
        except ImportError:
            handler = logging.StreamHandler()
        handler.setFormatter(OneLineFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(OneLineFormatter("forcepwd: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def activated_sockets():
    """The listening sockets systemd passed us (sd_listen_fds(3)), or []: forcepwd.socket and
    forcepwd-root.socket. They serve alike; their file modes decide who can connect."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    socks = [socket.socket(fileno=3 + i) for i in range(count)]  # SD_LISTEN_FDS_START = 3
    if not socks or any(s.family != socket.AF_UNIX or s.type != socket.SOCK_STREAM for s in socks):
        raise SystemExit("forcepwd: systemd must pass Unix stream sockets")
    return socks


def bind_socket(path, mode):
    """Bind our own socket with this file mode (0666: anyone may connect, the daemon authorizes
    by SO_PEERCRED; 0600: root only)."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SystemExit(f"forcepwd: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise SystemExit(f"forcepwd: another daemon already answers on {path}")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # left over from a daemon that died
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # never connectable by others before the chmod
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(128)
    return sock


async def watchdog(notifier, store, interval):
    while True:
        await asyncio.sleep(interval)
        try:
            store.is_flagged("")  # the store still answers: we are alive, not just running
        except StoreError as exc:
            log.error("store does not answer, not pinging the watchdog: %s", exc)
            continue
        notifier.notify("WATCHDOG=1")


def reload_settings(args, server):
    """SIGHUP: re-read the settings file; a broken file leaves the settings in force."""
    try:
        settings = config.load(args.config)
    except config.ConfigError as exc:
        log.error("SIGHUP: settings not reloaded: %s", exc)
        return
    server.apply(settings)
    log.info("SIGHUP: settings reloaded from %s", args.config)


async def run(args):
    settings = config.load(args.config)
    store = Store(args.state_dir)
    call_store = Store(args.state_dir)  # its own connection, used only by the calls' thread
    server = Server(Operations(store, settings.policy), Operations(call_store, settings.policy),
                    settings.admin_group_gid)
    socks = activated_sockets()
    own_paths = [] if socks else [args.root_socket, args.socket]
    if own_paths:
        socks = [bind_socket(args.root_socket, 0o600), bind_socket(args.socket, 0o666)]
    listeners = [await server.serve(sock) for sock in socks]

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_settings, args, server)

    notifier = sdnotify.SystemdNotifier()
    tasks = []
    watchdog_usec = os.environ.get("WATCHDOG_USEC")
    if watchdog_usec:
        tasks.append(asyncio.create_task(watchdog(notifier, store, int(watchdog_usec) / 2e6)))
    log.info("ready on %s (state in %s)",
             " and ".join(own_paths) if own_paths else f"{len(socks)} systemd socket(s)",
             args.state_dir)
    notifier.notify("READY=1")

    await stop.wait()
    notifier.notify("STOPPING=1")
    log.info("stopping")
    for task in tasks:
        task.cancel()
    for listener in listeners:
        listener.close()
        await listener.wait_closed()
    for path in own_paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    server.close()
    call_store.close()
    store.close()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.debug)
    try:
        asyncio.run(run(args))
    except (StoreError, config.ConfigError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
