"""What forcepwd does: the PAM questions and the WHM API 1 style functions.

Every function returns a WHM envelope; every failure becomes one at the boundary (`call`).
"""

import json
import logging

from . import accounts, listing, protocol
from .peer import PeerRole, user_name
from .policy import login_message
from .store import (EVENT_CHANGED_BY_USER, EVENT_CLEARED_ACCOUNT_REPLACED, EVENT_LOGIN_REFUSED,
                    EVENT_RESET_BY_ADMIN, StoreError)

log = logging.getLogger("forcepwd")

API_VERSION = 1
MAX_USERNAME_BYTES = 256


class ApiFailure(Exception):
    """The call as a whole is wrong; nothing was changed. Rendered as 'API failure: ...'."""


class Forbidden(Exception):
    """The peer may not do this."""


def envelope(command, result, reason, data=None, warnings=(), extra_metadata=None):
    env = {}
    if data is not None:
        env["data"] = data
    metadata = {"version": API_VERSION, "reason": reason, "result": result, "command": command}
    metadata.update(extra_metadata or {})
    if warnings:
        metadata["output"] = {"warnings": list(warnings)}
    env["metadata"] = metadata
    return env


def invalid_username(name):
    """Why `name` cannot be a user name, or None (checked before anything is changed)."""
    if name == "":
        return "empty"
    if len(name.encode("utf-8")) > MAX_USERNAME_BYTES:
        return "too long"
    if name.startswith("-"):
        return "starts with '-'"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch in ":/" for ch in name):
        return "contains whitespace, a control character, ':' or '/'"
    return None


def is_truthy(value):
    """Perl's truth, as WHM reads a users_json value: 0, "", "0", null and false clear the flag."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value not in ("", "0")
    return True  # arrays and objects are references, and references are true in Perl


class Operations:
    def __init__(self, store, policy):
        self.store = store
        self.policy = policy
        self._handlers = {
            "forcepasswordchange": self.forcepasswordchange,
            "list_forced_password_changes": self.list_forced_password_changes,
            "get_forced_password_change": self.get_forced_password_change,
            "forcepw_history": self.forcepw_history,
        }
        assert self._handlers.keys() == protocol.FUNCTIONS.keys()

    # PAM operations -------------------------------------------------------------------------

    def check_login(self, peer, request):
        user = request["user"]
        if peer.role is not PeerRole.ROOT and user != peer.name:
            raise Forbidden("only root may ask about another user")
        service = request["service"]
        flag, account = self._flag_of_this_account(user, service)
        if flag is None:
            return protocol.verdict_reply(protocol.VERDICT_ALLOW)
        if not self.policy.must_change_password(service, request[protocol.FIELD_CALLER_UID],
                                                account.days_until_change_allowed or 0):
            return protocol.verdict_reply(protocol.VERDICT_ALLOW)
        if peer.role is PeerRole.ROOT:  # a login (a user asking about themself is not one)
            origin = _describe_origin(request)
            self.store.record_event(user, flag.uid, EVENT_LOGIN_REFUSED, peer.uid, peer.name,
                                    service, origin)
            log.info("user %s must change password (service %s %s)", user, service, origin)
        return protocol.verdict_reply(protocol.VERDICT_CHANGE_REQUIRED,
                                      login_message(flag.reason))

    def password_changed(self, peer, request):
        # Only root runs the password stack that writes /etc/shadow; a user must not be able to
        # clear their own flag by saying they changed the password.
        if peer.role is not PeerRole.ROOT:
            raise Forbidden("only root may report a password change")
        user, service = request["user"], request["service"]
        flag, _ = self._flag_of_this_account(user, service)
        if flag is None:
            return protocol.verdict_reply(protocol.VERDICT_ALLOW)
        caller_uid = request[protocol.FIELD_CALLER_UID]
        if not self.policy.is_users_own_change(service, caller_uid, flag.uid):
            self.store.record_event(user, flag.uid, EVENT_RESET_BY_ADMIN, caller_uid,
                                    user_name(caller_uid), service, "flag kept")
            log.info("password of %s reset by uid %s (service %s): flag kept", user, caller_uid,
                     service)
            return protocol.verdict_reply(protocol.VERDICT_ALLOW)
        # The actor is the user: root's peer is only the passwd/sshd process that ran the change.
        if self.store.clear_flag(user, EVENT_CHANGED_BY_USER, flag.uid, user, service):
            log.info("user %s changed the password (service %s): flag cleared", user, service)
            return protocol.verdict_reply(protocol.VERDICT_CLEARED)
        return protocol.verdict_reply(protocol.VERDICT_ALLOW)

    def _flag_of_this_account(self, user, service):
        """(flag, account) when `user` is flagged and the flag was set for the account that has
        the name now; else (None, None). A flag left by an account that was deleted and whose
        name went to another (userdel + useradd) is dropped, not enforced."""
        flag = self.store.get_flag(user)
        if flag is None:
            return None, None
        try:
            account = accounts.lookup(user)
        except accounts.NoSuchUser:
            return None, None  # nobody to force
        if account.uid != flag.uid:
            self.store.clear_flag(user, EVENT_CLEARED_ACCOUNT_REPLACED, 0, "forcepwd", service)
            log.warning("flag of %s (uid %s) dropped: the name now belongs to uid %s", user,
                        flag.uid, account.uid)
            return None, None
        return flag, account

    # WHM API 1 style functions --------------------------------------------------------------

    def call(self, peer, function, args):
        """Run one function; whatever happens, the answer is an envelope."""
        try:
            spec = protocol.FUNCTIONS.get(function)
            if spec is None:
                raise ApiFailure(f"Unknown function \"{function}\".")
            if spec.admin_only and peer.role is PeerRole.USER:
                raise Forbidden(f"{peer.name} may not call {function}.")
            params = {name for name, _ in spec.params}
            unknown = sorted(k for k in args if k not in params
                             and not (spec.is_list and listing.is_listing_arg(k)))
            if unknown:
                raise ApiFailure(f"Unknown parameter(s) for {function}: {', '.join(unknown)}.")
            return self._handlers[function](peer, args)
        except (ApiFailure, listing.ListingError) as exc:
            return envelope(function, 0, f"API failure: {exc}")
        except Forbidden as exc:
            return envelope(function, 0, f"Access denied: {exc}")

    def forcepasswordchange(self, peer, args):
        command = "forcepasswordchange"
        users = _parse_users_json(args)
        stop_on_failure = _parse_bool(args, "stop_on_failure")
        allow_no_password = _parse_bool(args, "allow_no_password")
        reason = _parse_reason(args)
        invalid = sorted(name for name in users if invalid_username(name))
        if invalid:
            return envelope(command, 0, f"Invalid user(s): {', '.join(invalid)}")

        failed, warnings, to_flag, to_clear = {}, [], [], []
        todo = [(name, is_truthy(users[name])) for name in sorted(users)
                if is_truthy(users[name]) != self.store.is_flagged(name)]
        if not todo:
            return envelope(command, 1, "Nothing to do.", {"updated": []})
        for name, want_flag in todo:
            if not want_flag:
                to_clear.append(name)
                continue
            try:
                account = _flaggable_account(name, allow_no_password)
            except _UserFailure as exc:
                failed[name] = str(exc)
                if stop_on_failure:
                    break
                continue
            to_flag.append((name, account.uid))
            if account.days_until_change_allowed:
                warnings.append(
                    f"The minimum password age does not let \"{name}\" change the password for "
                    f"{account.days_until_change_allowed} more day(s); until then logins are not "
                    f"forced.")
        try:
            self.store.update_flags(to_flag, to_clear, peer.uid, peer.name, reason)
            updated = sorted([name for name, _ in to_flag] + to_clear)
            log.info("%s flagged %s, cleared %s%s", peer.name, [n for n, _ in to_flag], to_clear,
                     f" ({reason})" if reason else "")
        except StoreError as exc:
            log.error("store failure: %s", exc)
            updated = []
            for name in [n for n, _ in to_flag] + to_clear:
                failed[name] = f"Could not store the change for \"{name}\": {exc}"

        data = {"updated": updated}
        if not failed:
            return envelope(command, 1, "OK", data, warnings)
        data["failed"] = failed
        if len(failed) == 1 or stop_on_failure:
            reason_text = next(iter(failed.values()))
        else:
            reason_text = f"Failed to update {len(failed)} users: {', '.join(sorted(failed))}."
        return envelope(command, 0, reason_text, data, warnings)

    def list_forced_password_changes(self, peer, args):
        command = "list_forced_password_changes"
        records = [_flag_record(flag) for flag in self.store.list_flags()]
        records, extra = listing.apply_list_args(records, args, FLAG_FIELDS)
        return envelope(command, 1, "OK", {"users": records}, extra_metadata=extra)

    def get_forced_password_change(self, peer, args):
        command = "get_forced_password_change"
        user = args.get("user", peer.name)
        if peer.role is PeerRole.USER and user != peer.name:
            raise Forbidden(f"{peer.name} may only ask about {peer.name}.")
        flag = self.store.get_flag(user)
        own_uid = peer.uid if peer.role is PeerRole.USER else None
        if flag and own_uid is not None and flag.uid != own_uid:
            flag = None  # set for an earlier account of the same name, not for this user
        last_change = self.store.last_event(user, EVENT_CHANGED_BY_USER, own_uid)
        data = {"user": user, "flagged": 1 if flag else 0}
        if flag:
            data.update({k: v for k, v in _flag_record(flag).items() if k != "user"})
            # Not enforced before the minimum password age allows a change (case C07).
            data["change_allowed_in_days"] = _days_until_change_allowed(user)
        data["last_change"] = _event_record(last_change) if last_change else None
        return envelope(command, 1, "OK", data)

    def forcepw_history(self, peer, args):
        command = "forcepw_history"
        user, user_uid = args.get("user"), None
        if peer.role is PeerRole.USER:
            if user not in (None, peer.name):
                raise Forbidden(f"{peer.name} may only ask about {peer.name}.")
            user, user_uid = peer.name, peer.uid  # not an earlier account of the same name
        records = [_event_record(event) for event in self.store.history(user, user_uid)]
        records, extra = listing.apply_list_args(records, args, EVENT_FIELDS)
        return envelope(command, 1, "OK", {"events": records}, extra_metadata=extra)


class _UserFailure(Exception):
    """One user could not be updated; the others go on (unless stop_on_failure)."""


def _flaggable_account(name, allow_no_password):
    try:
        account = accounts.lookup(name)
    except accounts.NoSuchUser:
        raise _UserFailure(f"The user \"{name}\" does not exist.") from None
    if account.has_usable_password is False and not allow_no_password:
        # Forcing a change asks for the current password first: a key-only account has none to
        # give and would be locked out for good (case C02).
        raise _UserFailure(
            f"The user \"{name}\" has no usable password, so a forced change would lock them "
            f"out; set a password first, or pass allow_no_password=1.")
    return account


def _parse_users_json(args):
    if "users_json" not in args:
        raise ApiFailure('The parameter "users_json" is required.')
    try:
        users = json.loads(args["users_json"])
    except ValueError as exc:
        raise ApiFailure(f'The parameter "users_json" is not valid JSON: {exc}.') from None
    if not isinstance(users, dict):
        kind = {list: "an array", str: "a string"}.get(type(users), "not an object")
        raise ApiFailure('The parameter "users_json" must be a JSON object of user names '
                         f'(for example {{"user1":1}}), not {kind}.')
    return users


def _parse_reason(args):
    reason = args.get("reason", "")
    if len(reason.encode("utf-8")) > protocol.MAX_REASON_BYTES:
        raise ApiFailure(f'The parameter "reason" must be at most {protocol.MAX_REASON_BYTES} '
                         f'bytes long.')
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in reason):
        raise ApiFailure('The parameter "reason" must not contain control characters.')
    return reason


def _parse_bool(args, name):
    value = args.get(name, "0")
    if value not in ("0", "1"):
        raise ApiFailure(f'The parameter "{name}" must be 0 or 1, not "{value}".')
    return value == "1"


FLAG_FIELDS = ("user", "uid", "flagged_at", "flagged_by", "flagged_by_uid", "reason")
EVENT_FIELDS = ("at", "user", "uid", "event", "actor", "actor_uid", "service", "detail")


def _flag_record(flag):
    return {"user": flag.user, "uid": flag.uid, "flagged_at": flag.flagged_at,
            "flagged_by": flag.flagged_by, "flagged_by_uid": flag.flagged_by_uid,
            "reason": flag.reason}


def _event_record(event):
    return {"at": event.at, "user": event.user, "uid": event.user_uid, "event": event.event,
            "actor": event.actor, "actor_uid": event.actor_uid, "service": event.service,
            "detail": event.detail}


def _days_until_change_allowed(user):
    try:
        return accounts.lookup(user).days_until_change_allowed or 0
    except accounts.NoSuchUser:
        return 0


def _describe_origin(request):
    parts = [f"{key}={request[key]}" for key in ("rhost", "tty", "ruser") if request.get(key)]
    return " ".join(parts)
