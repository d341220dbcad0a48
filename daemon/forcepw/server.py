"""The Unix socket server: limits, timeouts, peer identification and dispatch."""

import asyncio
import logging

from . import peer as peers
from . import protocol
from .operations import Forbidden
from .store import StoreError

log = logging.getLogger("forcepwd")


class Server:
    def __init__(self, operations, admin_group_gid=None,
                 max_connections=protocol.MAX_CONNECTIONS,
                 read_timeout=protocol.REQUEST_READ_TIMEOUT_S):
        self.operations = operations
        self.admin_group_gid = admin_group_gid
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.active = 0

    def apply(self, settings):
        """New settings (from the settings file) for the requests that come next."""
        self.operations.policy = settings.policy
        self.admin_group_gid = settings.admin_group_gid

    async def serve(self, sock):
        """Serve on a listening socket (bound by us, or passed by systemd)."""
        return await asyncio.start_unix_server(
            self.handle_connection, sock=sock, limit=protocol.MAX_REQUEST_BYTES)

    async def handle_connection(self, reader, writer):
        self.active += 1
        try:
            if self.active > self.max_connections:
                reply = protocol.error_reply(
                    protocol.ERR_BUSY, f"more than {self.max_connections} connections at once")
            else:
                reply = await self._answer(reader, writer)
            writer.write(protocol.encode(reply))
            await asyncio.wait_for(writer.drain(), self.read_timeout)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the client went away or stopped reading; nothing to tell it
        finally:
            self.active -= 1
            writer.close()

    async def _answer(self, reader, writer):
        try:
            peer = peers.identify(writer.get_extra_info("socket"), self.admin_group_gid)
            line = await self._read_request(reader)
            request = protocol.decode_request(line)
            return self.dispatch(peer, request)
        except protocol.ProtocolError as exc:
            return protocol.error_reply(exc.kind, exc.message)
        except Forbidden as exc:
            log.warning("refused %s from uid %s: %s", request.get("op"), peer.uid, exc)
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

    def dispatch(self, peer, request):
        op = request["op"]
        if op == protocol.OP_CHECK_LOGIN:
            return self.operations.check_login(peer, request)
        if op == protocol.OP_PASSWORD_CHANGED:
            return self.operations.password_changed(peer, request)
        return protocol.result_reply(
            self.operations.call(peer, request["function"], request.get("args", {})))
