"""The SQLite store: flags and history survive a restart; files are private to root."""

import os
import stat

import pytest

from forcepw import store as st


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


def test_a_flag_set_and_a_history_event_survive_reopening_the_store(state_dir):
    s = st.Store(state_dir)
    s.set_flag("fpwtalice", 1234, 0, "root", "audit")
    s.close()
    s = st.Store(state_dir)
    flag = s.get_flag("fpwtalice")
    assert (flag.user, flag.uid, flag.flagged_by_uid, flag.flagged_by, flag.reason) == (
        "fpwtalice", 1234, 0, "root", "audit")
    assert flag.flagged_at.endswith("Z")
    assert [e.event for e in s.history("fpwtalice")] == [st.EVENT_FLAGGED]


def test_clearing_reports_whether_there_was_a_flag_and_records_only_real_clears(state_dir):
    s = st.Store(state_dir)
    assert s.clear_flag("fpwtbob", st.EVENT_CLEARED_BY_ADMIN, 0, "root") is False
    s.set_flag("fpwtbob", 1, 0, "root")
    assert s.clear_flag("fpwtbob", st.EVENT_CHANGED_BY_USER, 1, "fpwtbob", "passwd") is True
    assert not s.is_flagged("fpwtbob")
    events = s.history("fpwtbob")
    assert [(e.event, e.actor, e.service) for e in events] == [
        (st.EVENT_FLAGGED, "root", ""), (st.EVENT_CHANGED_BY_USER, "fpwtbob", "passwd")]


def test_list_is_sorted_by_user_and_history_can_be_limited(state_dir):
    s = st.Store(state_dir)
    for name in ("fpwtc", "fpwta", "fpwtb"):
        s.set_flag(name, 1, 0, "root")
    assert [f.user for f in s.list_flags()] == ["fpwta", "fpwtb", "fpwtc"]
    assert [e.user for e in s.history(limit=2)] == ["fpwta", "fpwtb"]


def test_state_dir_and_database_are_private_and_writes_are_fully_synchronous(state_dir):
    s = st.Store(state_dir)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(state_dir, st.DB_NAME)).st_mode) == 0o600
    # synchronous=FULL (2) in WAL mode: every commit is fsync'ed before set_flag returns.
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_that_cannot_be_opened_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((st.StoreError, OSError)):
        st.Store(str(blocker / "state"))


def test_history_is_bounded_per_user_so_one_user_cannot_push_out_the_others(state_dir):
    s = st.Store(state_dir)
    s.set_flag("fpwtquiet", 1, 0, "root")
    for _ in range(st.MAX_EVENTS_PER_USER + 50):
        s.record_event("fpwtnoisy", 2, st.EVENT_LOGIN_REFUSED, 0, "root", "sshd")
    assert len(s.history("fpwtnoisy", limit=10**6)) == st.MAX_EVENTS_PER_USER
    assert [e.event for e in s.history("fpwtquiet")] == [st.EVENT_FLAGGED]
