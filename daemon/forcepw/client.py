"""A client of forcepwd's socket: one request, one reply."""

import socket

from . import protocol

CLIENT_TIMEOUT_S = 30.0


class Unreachable(Exception):
    """The daemon could not be asked."""


def ask(socket_path, request, timeout=CLIENT_TIMEOUT_S):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(protocol.encode(request))
            chunks = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        raise Unreachable(f"cannot reach forcepwd at {socket_path}: {exc}") from None
    try:
        return protocol.decode_reply(b"".join(chunks))
    except protocol.ProtocolError as exc:
        raise Unreachable(f"bad reply from forcepwd at {socket_path}: {exc.message}") from None
