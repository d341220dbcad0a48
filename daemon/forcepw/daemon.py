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
                        help="Unix socket to listen on when not socket-activated "
                             "(default %(default)s)")
    parser.add_argument("--state-dir", default=STATE_DIR, help="default %(default)s")
    parser.add_argument("--config", default=config.CONFIG_PATH,
                        help="settings file, re-read on SIGHUP (default %(default)s)")
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def setup_logging(debug):
    level = logging.DEBUG if debug else logging.INFO
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler
            handler = JournalHandler(SYSLOG_IDENTIFIER="forcepwd")
        except ImportError:
            handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("forcepwd: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def activated_socket():
    """The listening socket systemd passed us, or None (sd_listen_fds(3))."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count != 1:
        raise SystemExit(f"forcepwd: expected 1 socket from systemd, got {count}")
    sock = socket.socket(fileno=3)  # SD_LISTEN_FDS_START
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise SystemExit("forcepwd: the socket from systemd is not a Unix stream socket")
    return sock


def bind_socket(path):
    """Bind our own socket. Any local user may connect: the daemon authorizes by SO_PEERCRED."""
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
    sock.bind(path)
    os.chmod(path, 0o666)
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
    server = Server(Operations(store, settings.policy), settings.admin_group_gid)
    sock = activated_socket()
    own_socket = sock is None
    if own_socket:
        sock = bind_socket(args.socket)
    listener = await server.serve(sock)

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
    log.info("ready on %s (state in %s)", "systemd socket" if not own_socket else args.socket,
             args.state_dir)
    notifier.notify("READY=1")

    await stop.wait()
    notifier.notify("STOPPING=1")
    log.info("stopping")
    for task in tasks:
        task.cancel()
    listener.close()
    await listener.wait_closed()
    if own_socket:
        try:
            os.unlink(args.socket)
        except FileNotFoundError:
            pass
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
