"""Beyond WHM: list who is pending (filter, sort, chunk, columns), one user's state, the history,
the shortcuts for people at a terminal, and what a plain user may see — against a running daemon,
with the peer's real kernel credentials."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures
from forcepw import cli, client, protocol


def ctl_json(daemon, *args):
    proc = daemon.ctl("--output=json", *args)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout else None)


def run_as(user, function, groups=()):
    """function() run in a forked child that has dropped to the user's uid, gid and the given
    supplementary groups, so the daemon sees them through SO_PEERCRED/SO_PEERGROUPS (no exec:
    the user need not be able to read this Python). -> (exit status, what it printed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.close(read_end)
            out = io.TextIOWrapper(os.fdopen(write_end, "wb"), encoding="utf-8")
            sys.stdout = sys.stderr = out
            os.setgroups(list(groups))
            os.setgid(user.pw.pw_gid)
            os.setuid(user.pw.pw_uid)
            code = function()
            out.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode("utf-8")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def run_cli_as(user, socket_path, *args, groups=()):
    """forcepwctl --output=json run by `user`."""
    os.chmod(Path(socket_path).parent, 0o755)  # let the user reach the socket
    return run_as(user, lambda: cli.main(["--socket", socket_path, "--output=json", *args]),
                  groups)


@pytest.fixture
def three_flagged(daemon, make_user):
    users = sorted((make_user() for _ in range(3)), key=lambda u: u.name)
    for user, reason in zip(users, ("audit", "leak", "audit 2")):
        status, env = ctl_json(daemon, "flag", user.name, "--reason", reason)
        assert status == 0, env
    return users


def test_list_shows_who_since_when_by_whom_and_why(daemon, three_flagged):
    status, env = ctl_json(daemon, "list")
    assert status == 0
    assert env["metadata"]["command"] == "list_forced_password_changes"
    records = env["data"]["users"]
    assert [r["user"] for r in records] == [u.name for u in three_flagged]
    assert [r["reason"] for r in records] == ["audit", "leak", "audit 2"]
    for record, user in zip(records, three_flagged):
        assert record["uid"] == user.pw.pw_uid
        assert (record["flagged_by"], record["flagged_by_uid"]) == ("root", 0)
        assert len(record["flagged_at"]) == 20 and record["flagged_at"].endswith("Z")


def test_list_filters_sorts_and_chunks_as_whmapi1(daemon, three_flagged):
    status, env = ctl_json(
        daemon, "list_forced_password_changes",
        "api.filter.enable=1", "api.filter.a.field=reason", "api.filter.a.arg0=audit",
        "api.filter.a.type=begins",
        "api.sort.enable=1", "api.sort.a.field=user", "api.sort.a.reverse=1",
        "api.chunk.enable=1", "api.chunk.size=1", "api.chunk.start=2",
        "api.columns.enable=1", "api.columns.a=user")
    assert status == 0, env
    audited = sorted([three_flagged[0].name, three_flagged[2].name], reverse=True)
    assert env["data"]["users"] == [{"user": audited[1]}]
    chunk = env["metadata"]["chunk"]
    assert (chunk["records"], chunk["size"], chunk["start"], chunk["current"],
            chunk["chunks"]) == (2, 1, 2, 2, 2)
    assert env["metadata"]["filter"]["a"]["arg0"] == "audit"


def test_a_bad_list_argument_is_an_api_failure(daemon, three_flagged):
    status, env = ctl_json(daemon, "list", "api.filter.enable=1", "api.filter.a.field=nosuch",
                           "api.filter.a.arg0=x")
    assert status == 1
    assert env["metadata"]["reason"].startswith("API failure: ")


def test_status_shows_one_user_including_the_last_change_they_made(daemon, make_user):
    alice = make_user()
    assert ctl_json(daemon, "flag", alice.name, "--reason", "rotate")[0] == 0
    client.ask(daemon.socket, protocol.password_changed_request(alice.name, "passwd",
                                                                caller_uid=alice.pw.pw_uid))
    status, env = ctl_json(daemon, "status", alice.name)
    assert status == 0
    data = env["data"]
    assert (data["user"], data["flagged"]) == (alice.name, 0)
    assert (data["last_change"]["event"], data["last_change"]["service"]) == (
        "changed_by_user", "passwd")
    ctl_json(daemon, "flag", alice.name)
    _, env = ctl_json(daemon, "get_forced_password_change", f"user={alice.name}")
    assert (env["data"]["flagged"], env["data"]["flagged_by"]) == (1, "root")


def test_history_records_flag_refusal_change_and_cancel_with_actor_and_service(daemon, make_user):
    alice = make_user()
    ctl_json(daemon, "flag", alice.name)
    check = protocol.check_login_request(alice.name, "sshd", rhost="127.0.0.1", caller_uid=0)
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_CHANGE_REQUIRED
    client.ask(daemon.socket, protocol.password_changed_request(alice.name, "sshd", caller_uid=0))
    ctl_json(daemon, "flag", alice.name)
    ctl_json(daemon, "unflag", alice.name)
    status, env = ctl_json(daemon, "history", alice.name)
    assert status == 0
    events = [(e["event"], e["actor"], e["service"]) for e in env["data"]["events"]]
    assert events == [("flagged", "root", ""), ("login_refused", "root", "sshd"),
                      ("changed_by_user", alice.name, "sshd"), ("flagged", "root", ""),
                      ("cleared_by_admin", "root", "")]


def test_shortcuts_follow_the_exit_status_rule(daemon, make_user):
    alice = make_user()
    assert ctl_json(daemon, "flag", alice.name)[0] == 0
    status, env = ctl_json(daemon, "flag", alice.name, "fpwtzzghost")
    assert status == cli.EXIT_RESULT_FAILED and env["data"]["updated"] == []
    assert ctl_json(daemon, "unflag", alice.name)[0] == 0
    assert ctl_json(daemon, "unflag", alice.name)[1]["metadata"]["reason"] == "Nothing to do."


def test_a_plain_user_sees_their_own_state_and_nothing_else(daemon, make_user):
    alice, bob = make_user(), make_user()
    ctl_json(daemon, "flag", alice.name, "--reason", "audit")
    ctl_json(daemon, "flag", bob.name)

    status, out = run_cli_as(alice, daemon.socket, "status")
    env = json.loads(out)
    assert status == 0
    assert (env["data"]["user"], env["data"]["flagged"], env["data"]["reason"]) == (
        alice.name, 1, "audit")

    status, out = run_cli_as(alice, daemon.socket, "status", bob.name)
    assert status == cli.EXIT_RESULT_FAILED and "Access denied" in out

    status, out = run_cli_as(alice, daemon.socket, "history")
    assert status == 0
    assert {e["user"] for e in json.loads(out)["data"]["events"]} == {alice.name}


def test_a_plain_user_can_neither_flag_nor_list_nor_clear_their_own_flag(daemon, make_user):
    alice = make_user()
    ctl_json(daemon, "flag", alice.name)
    for args in (("unflag", alice.name), ("flag", "root"), ("list",)):
        status, out = run_cli_as(alice, daemon.socket, *args)
        assert status == cli.EXIT_RESULT_FAILED, args
        assert "Access denied" in out
    # The PAM report of a change is root's alone: a user cannot claim to have changed it.
    status, _ = run_cli_as(alice, daemon.socket, "status")
    assert status == 0
    _, env = ctl_json(daemon, "status", alice.name)
    assert env["data"]["flagged"] == 1


def test_members_of_the_admin_group_may_flag(make_user, daemon_factory, request):
    admin = make_user()
    group = admin.name + "g"
    subprocess.run(["groupadd", group], check=True)
    request.addfinalizer(lambda: subprocess.run(["groupdel", group], check=False))
    subprocess.run(["usermod", "-aG", group, admin.name], check=True)
    target = make_user()
    running = daemon_factory(config_text=f"[forcepwd]\nadmin_group = {group}\n")
    groups = os.getgrouplist(admin.name, admin.pw.pw_gid)
    status, out = run_cli_as(admin, running.socket, "flag", target.name, groups=groups)
    assert status == 0, out
    assert json.loads(out)["data"]["updated"] == [target.name]



def test_root_resetting_a_flagged_users_password_keeps_the_flag(daemon, make_user):  # case C09
    alice = make_user()
    ctl_json(daemon, "flag", alice.name)
    reply = client.ask(daemon.socket,
                       protocol.password_changed_request(alice.name, "chpasswd", caller_uid=0))
    assert reply["verdict"] == protocol.VERDICT_ALLOW
    _, env = ctl_json(daemon, "status", alice.name)
    assert env["data"]["flagged"] == 1
    _, env = ctl_json(daemon, "history", alice.name)
    assert env["data"]["events"][-1]["event"] == "reset_by_admin"
    own = protocol.password_changed_request(alice.name, "passwd", caller_uid=alice.pw.pw_uid)
    assert client.ask(daemon.socket, own)["verdict"] == protocol.VERDICT_CLEARED


def test_a_flag_is_not_enforced_while_the_minimum_password_age_forbids_the_change(
        daemon, make_user):  # case C07: passwd run by the user (key login, su) would refuse it
    young = make_user()
    subprocess.run(["chage", "-m", "7", "-d", "today", young.name], check=True)
    ctl_json(daemon, "flag", young.name)
    check = protocol.check_login_request(young.name, "sshd", caller_uid=0)
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_ALLOW
    # 7 or 8: chage rounds "today" to the nearest day, pam_unix counts whole days since 1970.
    assert ctl_json(daemon, "status", young.name)[1]["data"]["change_allowed_in_days"] in (7, 8)
    subprocess.run(["chage", "-m", "0", young.name], check=True)
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_CHANGE_REQUIRED


def test_a_flag_follows_the_account_not_a_later_account_with_the_same_name(daemon, make_user):
    old = make_user()
    ctl_json(daemon, "flag", old.name, "--reason", "old account")
    name, old_uid = old.name, old.pw.pw_uid
    subprocess.run(["userdel", "-r", name], check=True, capture_output=True)
    placeholder = make_user()  # may take the freed uid, so the new account gets another one
    subprocess.run(["useradd", "-m", "-u", str(old_uid + 1000), "-c",
                    fixtures._owner_tag(), name], check=True)  # tagged: swept if we crash
    new = type(old)(name, old.password)
    try:
        assert new.pw.pw_uid != old_uid
        # The new account's own view: not flagged, and none of the old account's history.
        status, out = run_cli_as(new, daemon.socket, "status")
        assert status == 0 and json.loads(out)["data"]["flagged"] == 0
        status, out = run_cli_as(new, daemon.socket, "history")
        assert json.loads(out)["data"]["events"] == []
        # At login the stale flag is dropped, not enforced, and that is recorded.
        check = protocol.check_login_request(name, "sshd", caller_uid=0)
        assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_ALLOW
        _, env = ctl_json(daemon, "history", name)
        assert [(e["event"], e["uid"]) for e in env["data"]["events"]] == [
            ("flagged", old_uid), ("cleared_account_replaced", old_uid)]
        assert ctl_json(daemon, "list")[1]["data"]["users"] == []
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True)
    del placeholder
