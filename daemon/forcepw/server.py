"""The Unix socket server: limits, timeouts, peer identification and dispatch."""

import asyncio
import collections
import concurrent.futures
import logging
import time

from . import peer as peers
from . import protocol
from .operations import Forbidden
from .store import StoreError

log = logging.getLogger("forcepwd")


REFUSAL_LOG_INTERVAL_S = 60.0  # a uid's refusals (busy, forbidden) are logged at most this often


class Server:
    """pam_operations answer the PAM module on the event loop; call_operations (with their own
    store connection) run the WHM-style functions in a worker thread. However long a function
    takes, the check of a login does not wait for it: the module gives up after 2 s and fails
    open, so a slow call must never be able to delay a login's verdict."""

    def __init__(self, pam_operations, call_operations, admin_group_gid=None,
                 max_connections=protocol.MAX_CONNECTIONS,
                 max_connections_per_uid=protocol.MAX_CONNECTIONS_PER_UID,
                 read_timeout=protocol.REQUEST_READ_TIMEOUT_S):
        self.pam_operations = pam_operations
        self.call_operations = call_operations
        self.calls = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="forcepw-calls")
        self.admin_group_gid = admin_group_gid
        self.max_connections = max_connections
        self.max_connections_per_uid = max_connections_per_uid
        self.read_timeout = read_timeout
        self.active_by_uid = collections.Counter()
        self.refusal_logged_at = {}

    def apply(self, settings):
        """New settings (from the settings file) for the requests that come next."""
        self.pam_operations.policy = self.call_operations.policy = settings.policy
        self.admin_group_gid = settings.admin_group_gid

    def close(self):
        self.calls.shutdown(wait=True)

    async def serve(self, sock):
        """Serve on a listening socket (bound by us, or passed by systemd)."""
        return await asyncio.start_unix_server(
            self.handle_connection, sock=sock, limit=protocol.MAX_REQUEST_BYTES)

    async def handle_connection(self, reader, writer):
        uid = None
        try:
            peer = peers.identify(writer.get_extra_info("socket"), self.admin_group_gid)
            uid = peer.uid
            self.active_by_uid[uid] += 1
            if self._over_limit(uid):
                reply = protocol.error_reply(protocol.ERR_BUSY, "too many connections at once")
            else:
                reply = await self._answer(peer, reader)
            writer.write(protocol.encode(reply))
            await asyncio.wait_for(writer.drain(), self.read_timeout)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the client went away or stopped reading; nothing to tell it
        except Exception as exc:  # a bug must cost one connection, never the daemon or its log
            self._log_refusal(uid, "internal", f"hit an internal error: {type(exc).__name__}: "
                                               f"{str(exc)[:200]}", logging.ERROR)
        finally:
            if uid is not None:
                self.active_by_uid[uid] -= 1
                if not self.active_by_uid[uid]:
                    del self.active_by_uid[uid]
            writer.close()

    def _over_limit(self, uid):
        if uid == 0:
            over = self.active_by_uid[0] > self.max_connections
        else:
            others = sum(n for u, n in self.active_by_uid.items() if u != 0)
            over = (self.active_by_uid[uid] > self.max_connections_per_uid
                    or others > self.max_connections)
        if over:
            self._log_refusal(uid, "busy", "has too many connections at once; refusing the "
                                           "extra ones")
        return over

    def _log_refusal(self, uid, kind, text, level=logging.WARNING):
        """A peer can cause refusals as fast as it likes: log them, but not each one."""
        now = time.monotonic()
        last = self.refusal_logged_at.get((uid, kind))
        if last is None or now - last >= REFUSAL_LOG_INTERVAL_S:
            self.refusal_logged_at[(uid, kind)] = now
            log.log(level, "uid %s %s (logged at most once a minute)", uid, text)

    async def _answer(self, peer, reader):
        try:
            request = protocol.decode_request(await self._read_request(reader))
            return await self.dispatch(peer, request)
        except protocol.ProtocolError as exc:
            return protocol.error_reply(exc.kind, exc.message)
        except Forbidden as exc:
            self._log_refusal(peer.uid, "forbidden", f"was refused {request['op']}: {exc}")
            return protocol.error_reply(protocol.ERR_FORBIDDEN, str(exc))
        except StoreError as exc:
            log.error("store failure: %s", exc)
            return protocol.error_reply(protocol.ERR_INTERNAL, f"state store failure: {exc}")

    async def _read_request(self, reader):
        try:
            return await asyncio.wait_for(reader.readuntil(b"\n"), self.read_timeout)
        except asyncio.TimeoutError:
            raise protocol.ProtocolError(
                protocol.ERR_TIMEOUT, f"no complete request within {self.read_timeout} s") from None
        except asyncio.LimitOverrunError:
            raise protocol.ProtocolError(
                protocol.ERR_TOO_LARGE,
                f"request larger than {protocol.MAX_REQUEST_BYTES} bytes") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise protocol.ProtocolError(protocol.ERR_BAD_REQUEST, "empty request") from None
            return exc.partial  # the client closed its side after the request: accept it

    async def dispatch(self, peer, request):
        op = request["op"]
        if op == protocol.OP_CHECK_LOGIN:
            return self.pam_operations.check_login(peer, request)
        if op == protocol.OP_PASSWORD_CHANGED:
            return self.pam_operations.password_changed(peer, request)
        envelope = await asyncio.get_running_loop().run_in_executor(
            self.calls, self.call_operations.call, peer, request["function"],
            request.get("args", {}))
        return protocol.result_reply(envelope)
