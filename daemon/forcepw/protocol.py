"""The wire protocol between forcepwd and its clients, defined once.

Transport: a Unix stream socket. A client connects, sends exactly one request, reads exactly one
reply, and the daemon closes the connection. A request and a reply are each one JSON object
encoded as UTF-8 on a single line ending in "\\n" (JSON escapes any newline inside strings).

Requests: {"op": OP, ...fields}. Replies: {"ok": true, ...} or
{"ok": false, "error": {"kind": KIND, "message": TEXT}}.

The PAM module (pam_forcepw/protocol.c) speaks only OP_CHECK_LOGIN and OP_PASSWORD_CHANGED and
reads only the "verdict" and "message" strings of the reply; tests/vectors.json holds the exact
bytes both sides must agree on.
"""

import json
from dataclasses import dataclass

# Two sockets serve the same protocol; the daemon authorizes every request by SO_PEERCRED on both.
# The root-only one (mode 0600) is what the PAM module and root's forcepwctl use: no other user can
# even queue a connection on it, so nobody can crowd out a login's check (an attacker filling the
# public socket's listen queue would otherwise make the module fail open). The public one (0666)
# is for everyone else: admin-group members and users asking about themselves.
SOCKET_PATH = "/run/forcepw/forcepwd.sock"
ROOT_SOCKET_PATH = "/run/forcepw/forcepwd-root.sock"

# Limits. The PAM module has its own copy of the reply limit and the timeout in protocol.h.
MAX_REQUEST_BYTES = 64 * 1024  # one request line, newline included
MAX_PAM_REPLY_BYTES = 4096  # what the PAM module reads at most
REQUEST_READ_TIMEOUT_S = 5.0  # daemon: a client must send its whole request within this
# daemon: connections served at once; more are refused with ERR_BUSY. Root (the PAM module in
# sshd, login, su; the admin CLI) has a budget of its own that no other user can use up.
MAX_CONNECTIONS = 64  # for root; and for all other users together
MAX_CONNECTIONS_PER_UID = 8  # for each user other than root
MAX_PAM_FIELD_BYTES = 1024  # user, service, rhost, tty, ruser: longer values are refused
# forcepasswordchange's reason, shown at login: short enough that the verdict with the message
# always fits in MAX_PAM_REPLY_BYTES (a longer reply would make the module fail open).
MAX_REASON_BYTES = 512

# Operations.
OP_CHECK_LOGIN = "check_login"  # PAM account: must this user change the password now?
OP_PASSWORD_CHANGED = "password_changed"  # PAM password: the user has just set a new password
OP_CALL = "call"  # admin/user: a WHM API 1 style function with string arguments
OPS = (OP_CHECK_LOGIN, OP_PASSWORD_CHANGED, OP_CALL)

# Fields the PAM module sends, all strings ("" when the PAM item is unset).
PAM_FIELDS = ("user", "service", "rhost", "tty", "ruser")
# Set by the module from getuid() of the host process: the real uid of whoever ran su, sudo, ...
FIELD_CALLER_UID = "caller_uid"

# Verdicts in replies to the PAM operations.
VERDICT_ALLOW = "allow"  # nothing to do
VERDICT_CHANGE_REQUIRED = "change_required"  # account: return PAM_NEW_AUTHTOK_REQD
VERDICT_CLEARED = "cleared"  # password: the flag was cleared


@dataclass(frozen=True)
class Function:
    """A WHM API 1 style function reachable through OP_CALL (and so from forcepwctl)."""
    params: tuple  # (name, help) pairs; list functions also take api.filter/sort/chunk/columns.*
    summary: str
    admin_only: bool
    is_list: bool = False


FUNCTIONS = {
    "forcepasswordchange": Function(
        (("users_json", 'JSON object {"user":1|0}: 1 forces a change at next login, 0 cancels'),
         ("stop_on_failure", "1 = stop at the first user that fails (default 0)"),
         ("reason", "text stored with the flag and shown to the user at login"),
         ("allow_no_password", "1 = flag users without a usable password anyway (default 0)")),
        "Force users to change their password at their next login, or cancel it.", True),
    "list_forced_password_changes": Function(
        (), "List users who must change their password: since when, by whom, why.", True, True),
    "get_forced_password_change": Function(
        (("user", "the user (default: yourself)"),),
        "One user's state, with the last password change they made.", False),
    "forcepw_history": Function(
        (("user", "only this user's events (a plain user always sees only their own)"),),
        "Events: flagged, cleared by admin, changed by user, login refused.", False, True),
}

# Error kinds.
ERR_BAD_REQUEST = "bad_request"
ERR_TOO_LARGE = "too_large"
ERR_TIMEOUT = "timeout"
ERR_FORBIDDEN = "forbidden"
ERR_BUSY = "busy"
ERR_INTERNAL = "internal"


class ProtocolError(Exception):
    """A request that cannot be understood; kind is one of the ERR_* values."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def encode(obj):
    """One message as the bytes sent on the wire."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode_request(line):
    """Bytes of one request line (newline optional) -> dict with a known "op"."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(ERR_TOO_LARGE, f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        # surrogateescape: invalid UTF-8 in a reported PAM item is cleaned below, not refused.
        request = json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise ProtocolError(ERR_BAD_REQUEST, f"request is not a JSON object: {exc}") from None
    except RecursionError:
        raise ProtocolError(ERR_BAD_REQUEST, "request is nested too deeply") from None
    if not isinstance(request, dict):
        raise ProtocolError(ERR_BAD_REQUEST, "request is not a JSON object")
    op = request.get("op")
    if op not in OPS:
        raise ProtocolError(ERR_BAD_REQUEST, f"unknown op {_shown(op)}")
    if op in (OP_CHECK_LOGIN, OP_PASSWORD_CHANGED):
        _check_pam_fields(request)
    if op == OP_CALL:
        function, args = request.get("function"), request.get("args", {})
        if not isinstance(function, str) or not _is_text(function):
            raise ProtocolError(ERR_BAD_REQUEST, "field 'function' must be a UTF-8 string")
        if not isinstance(args, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and _is_text(k) and _is_text(v)
                for k, v in args.items()):
            raise ProtocolError(ERR_BAD_REQUEST, "field 'args' must map UTF-8 strings to strings")
    return request


# user and service decide the verdict: they must be exact. rhost, tty and ruser are only reported
# (history, log): whoever can set them must not be able to skip the check with a bad value.
_DECIDING_FIELDS = ("user", "service")


def _check_pam_fields(request):
    for field in PAM_FIELDS:
        value = request.get(field, "")
        if not isinstance(value, str):
            raise ProtocolError(ERR_BAD_REQUEST, f"field {field!r} must be a string")
        if field in _DECIDING_FIELDS:
            if not _is_text(value):
                raise ProtocolError(ERR_BAD_REQUEST, f"field {field!r} is not valid UTF-8")
            if len(value.encode("utf-8")) > MAX_PAM_FIELD_BYTES:
                raise ProtocolError(ERR_TOO_LARGE, f"field {field!r} is too long")
        else:
            request[field] = _cleaned(value)
    if not request.get("user"):
        raise ProtocolError(ERR_BAD_REQUEST, "field 'user' is required")
    caller = request.get(FIELD_CALLER_UID, -1)
    if not isinstance(caller, int) or isinstance(caller, bool):
        raise ProtocolError(ERR_BAD_REQUEST, f"field {FIELD_CALLER_UID!r} must be an integer")


def _is_text(value):
    """No lone surrogates: neither invalid UTF-8 bytes nor a \\ud800-style escape."""
    return not any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)


def _cleaned(value):
    """Invalid UTF-8 replaced, cut to MAX_PAM_FIELD_BYTES."""
    text = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    return text.encode("utf-8")[:MAX_PAM_FIELD_BYTES].decode("utf-8", "ignore")


def _shown(value, limit=64):
    """A client's value in an error message: short, and always encodable (repr escapes lone
    surrogates)."""
    text = repr(value)
    return (text[:limit] + "...") if len(text) > limit else text


def check_login_request(user, service="", rhost="", tty="", ruser="", caller_uid=-1):
    return {"op": OP_CHECK_LOGIN, "user": user, "service": service, "rhost": rhost,
            "tty": tty, "ruser": ruser, FIELD_CALLER_UID: caller_uid}


def password_changed_request(user, service="", rhost="", tty="", ruser="", caller_uid=-1):
    return dict(check_login_request(user, service, rhost, tty, ruser, caller_uid),
                op=OP_PASSWORD_CHANGED)


def call_request(function, args):
    return {"op": OP_CALL, "function": function, "args": dict(args)}


def verdict_reply(verdict, message=""):
    return {"ok": True, "verdict": verdict, "message": message}


def result_reply(envelope):
    return {"ok": True, "result": envelope}


def error_reply(kind, message):
    return {"ok": False, "error": {"kind": kind, "message": message}}


def decode_reply(line):
    """Bytes of one reply line -> dict; raises ProtocolError if it is not a reply."""
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(ERR_BAD_REQUEST, f"reply is not JSON: {exc}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ProtocolError(ERR_BAD_REQUEST, "reply is not a forcepwd reply")
    return reply
