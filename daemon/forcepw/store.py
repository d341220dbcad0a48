"""Durable state: which users must change their password, and what happened to whom.

SQLite in WAL mode with synchronous=FULL: a commit returns only after the log is fsync'ed, so a
write the daemon has acknowledged survives a crash or power loss.
"""

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

DB_NAME = "forcepw.db"
MAX_EVENTS = 100_000  # history kept; older events are dropped
MAX_EVENTS_PER_USER = 1000  # and for each user name

# History event kinds.
EVENT_FLAGGED = "flagged"
EVENT_CLEARED_BY_ADMIN = "cleared_by_admin"
EVENT_CHANGED_BY_USER = "changed_by_user"
EVENT_LOGIN_REFUSED = "login_refused"
EVENT_RESET_BY_ADMIN = "reset_by_admin"  # root set the password; the flag stays
EVENT_CLEARED_ACCOUNT_REPLACED = "cleared_account_replaced"  # the name now has another uid

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    user TEXT PRIMARY KEY,
    uid INTEGER NOT NULL,
    flagged_at TEXT NOT NULL,
    flagged_by_uid INTEGER NOT NULL,
    flagged_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    user_uid INTEGER NOT NULL,  -- the account the event is about: a name can be reused
    event TEXT NOT NULL,
    actor_uid INTEGER NOT NULL,
    actor TEXT NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user, id);
CREATE INDEX IF NOT EXISTS events_by_user_event ON events (user, event, id);
"""


class StoreError(Exception):
    """The state could not be read or written."""


@dataclass(frozen=True)
class Flag:
    user: str
    uid: int
    flagged_at: str
    flagged_by_uid: int
    flagged_by: str
    reason: str


@dataclass(frozen=True)
class Event:
    at: str
    user: str
    user_uid: int
    event: str
    actor_uid: int
    actor: str
    service: str
    detail: str


_EVENT_COLUMNS = "at, user, user_uid, event, actor_uid, actor, service, detail"


def utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, state_dir):
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        os.chmod(state_dir, 0o700)  # also when it already existed: flags and history are private
        path = os.path.join(state_dir, DB_NAME)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Two connections (PAM checks, admin calls) may want to write at once: wait, briefly.
            self._db.execute("PRAGMA busy_timeout=1000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        os.chmod(path, 0o600)

    def close(self):
        self._db.close()

    def get_flag(self, user):
        row = self._db.execute(
            "SELECT user, uid, flagged_at, flagged_by_uid, flagged_by, reason"
            " FROM flags WHERE user = ?", (user,)).fetchone()
        return Flag(*row) if row else None

    def is_flagged(self, user):
        return self._db.execute("SELECT 1 FROM flags WHERE user = ?", (user,)).fetchone() is not None

    def list_flags(self):
        rows = self._db.execute(
            "SELECT user, uid, flagged_at, flagged_by_uid, flagged_by, reason"
            " FROM flags ORDER BY user").fetchall()
        return [Flag(*row) for row in rows]

    def set_flag(self, user, uid, actor_uid, actor, reason=""):
        """Flag one user and record it, in one durable transaction."""
        self.update_flags([(user, uid)], [], actor_uid, actor, reason)

    def update_flags(self, to_flag, to_clear, actor_uid, actor, reason=""):
        """An admin's call: flag [(user, uid)] and clear [user], all in one durable transaction
        (one fsync however many users: the daemon answers logins meanwhile)."""
        now = utc_now()
        with self._transaction():
            for user, uid in to_flag:
                self._db.execute(
                    "INSERT OR REPLACE INTO flags VALUES (?, ?, ?, ?, ?, ?)",
                    (user, uid, now, actor_uid, actor, reason))
                self._record(now, user, uid, EVENT_FLAGGED, actor_uid, actor, "", reason)
            for user in to_clear:
                self._clear(now, user, EVENT_CLEARED_BY_ADMIN, actor_uid, actor, "")

    def clear_flag(self, user, event, actor_uid, actor, service=""):
        """Clear one user's flag and record why; returns False if it was not flagged."""
        with self._transaction():
            return self._clear(utc_now(), user, event, actor_uid, actor, service)

    def record_event(self, user, user_uid, event, actor_uid, actor, service="", detail=""):
        with self._transaction():
            self._record(utc_now(), user, user_uid, event, actor_uid, actor, service, detail)

    def history(self, user=None, user_uid=None, limit=1000):
        """The newest `limit` events, oldest first; of one user (and account) when given."""
        where, params = self._event_filter(user, user_uid)
        rows = self._db.execute(f"SELECT {_EVENT_COLUMNS} FROM events {where}"
                                " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [Event(*row) for row in reversed(rows)]

    def last_event(self, user, event, user_uid=None):
        where, params = self._event_filter(user, user_uid)
        row = self._db.execute(f"SELECT {_EVENT_COLUMNS} FROM events {where} AND event = ?"
                               " ORDER BY id DESC LIMIT 1", (*params, event)).fetchone()
        return Event(*row) if row else None

    @staticmethod
    def _event_filter(user, user_uid):
        conditions = [(c, v) for c, v in (("user = ?", user), ("user_uid = ?", user_uid))
                      if v is not None]
        if not conditions:
            return "WHERE 1", ()
        return "WHERE " + " AND ".join(c for c, _ in conditions), tuple(v for _, v in conditions)

    def _clear(self, at, user, event, actor_uid, actor, service):
        row = self._db.execute("SELECT uid FROM flags WHERE user = ?", (user,)).fetchone()
        if row is None:
            return False
        self._db.execute("DELETE FROM flags WHERE user = ?", (user,))
        self._record(at, user, row[0], event, actor_uid, actor, service, "")
        return True

    def _record(self, at, user, user_uid, event, actor_uid, actor, service, detail):
        cursor = self._db.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, user, user_uid, event, actor_uid, actor, service, detail))
        # Bounded history: every login attempt of a flagged user adds an event. Per user too, so
        # that one user's many attempts cannot push everyone else's history out.
        self._db.execute("DELETE FROM events WHERE id <= ?", (cursor.lastrowid - MAX_EVENTS,))
        self._db.execute(
            "DELETE FROM events WHERE user = ? AND id <= (SELECT id FROM events WHERE user = ?"
            " ORDER BY id DESC LIMIT 1 OFFSET ?)", (user, user, MAX_EVENTS_PER_USER))

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, with ROLLBACK on error; sqlite errors become StoreError."""

    def __init__(self, db):
        self._db = db

    def __enter__(self):
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def __exit__(self, exc_type, exc, tb):
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error as err:
            raise StoreError(str(err)) from err
        if isinstance(exc, sqlite3.Error):
            raise StoreError(str(exc)) from exc
        return False
