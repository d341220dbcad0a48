"""End-to-end over ssh: real sshd on a private port, the real ssh client, real users and PAM stacks
on the machine's common-* files, forcepwd and pam_forcepw.so from this tree. Nothing is mocked."""

import json
import os
import signal
import time

import pytest

import fixtures

pytestmark = pytest.mark.e2e

# What the module sends as PAM_TEXT_INFO contains this word (policy.DEFAULT_MESSAGE).
ADMIN_WORD = "administrator"
# pam_unix's own message for an expired shadow entry; it must NOT be what the user sees here,
# otherwise a forced change could come from /etc/shadow instead of from forcepw.
PAM_UNIX_EXPIRED = "administrator enforced"
FAIL_OPEN_LOGIN_BUDGET_S = 10.0  # the module waits at most 2 s per PAM call


def assert_shadow_not_expired(user):
    """The change must be forced by forcepw, not by an expired /etc/shadow entry."""
    lastchg = user.shadow_fields()[2]
    assert lastchg not in ("", "0"), f"shadow lastchg of {user.name} is {lastchg!r}"


def forced_change_over_ssh(user, port):
    """Logs in with the current password, goes through the forced change, reaches a shell.
    The user's password becomes the new one. Returns (old_password, transcript)."""
    new_password = fixtures.strong_password(unlike=user.password)
    with fixtures.ssh_login(user, user.password, port) as session:
        session.change_password(user.password, new_password)
        session.expect_shell()
        session.logout()
        transcript = session.transcript
    old_password, user.password = user.password, new_password
    return old_password, transcript


def test_harness_private_sshd_without_forcepw_gives_an_unflagged_user_a_shell(
        test_user, plain_sshd):
    with fixtures.ssh_login(test_user, test_user.password, plain_sshd.port) as session:
        session.expect_plain_shell()
        session.logout()


def test_pam_lines_prints_an_account_and_a_password_line_for_the_module_and_socket(
        daemon, pam_module):
    account, password = daemon.pam_lines(pam_module)
    for line in (account, password):
        assert pam_module in line.split()
        assert f"socket={daemon.root_socket}" in line.split()
    assert "new_authtok_reqd=done" in account


def test_pam_lines_accepts_socket_after_the_subcommand_as_documented_in_the_contract(
        daemon, pam_module):
    # The brief's contract: `forcepwctl pam-lines --socket PATH --module /abs/pam_forcepw.so`.
    proc = daemon.ctl("pam-lines", "--socket", daemon.root_socket, "--module", pam_module)
    assert proc.returncode == 0, proc.stderr
    assert f"socket={daemon.root_socket}" in proc.stdout


def test_unflagged_user_logs_in_over_ssh_with_no_change_prompt(test_user, forcepw_sshd):
    with fixtures.ssh_login(test_user, test_user.password, forcepw_sshd.port) as session:
        session.expect_plain_shell()
        session.logout()
    assert ADMIN_WORD not in session.transcript


def test_flagged_user_over_ssh_is_told_an_administrator_requires_a_new_password_changes_it_and_gets_a_shell(  # noqa: E501
        test_user, daemon, forcepw_sshd):
    envelope = daemon.flag(test_user)
    assert envelope["data"]["updated"] == [test_user.name]
    assert daemon.status(test_user)["flagged"] == 1
    assert_shadow_not_expired(test_user)

    old_password, transcript = forced_change_over_ssh(test_user, forcepw_sshd.port)

    before_change = transcript.split("New password")[0]
    assert ADMIN_WORD in before_change, transcript
    assert PAM_UNIX_EXPIRED not in transcript
    assert "Current password" in before_change, transcript
    assert fixtures.SHELL_PROBE_ANSWER in transcript


def test_after_the_forced_change_the_flag_is_gone_the_new_password_logs_in_plainly_and_the_old_one_is_refused(  # noqa: E501
        test_user, daemon, forcepw_sshd):
    daemon.flag(test_user)
    old_password, _ = forced_change_over_ssh(test_user, forcepw_sshd.port)

    status = daemon.status(test_user)
    assert status["flagged"] == 0, status
    assert status["last_change"] and status["last_change"]["user"] == test_user.name, status
    proc, envelope = daemon.forcepasswordchange({test_user.name: 0})
    assert proc.returncode == 0, proc.stderr
    assert envelope["metadata"]["reason"] == "Nothing to do.", envelope
    assert envelope["data"]["updated"] == []

    with fixtures.ssh_login(test_user, test_user.password, forcepw_sshd.port) as session:
        session.expect_plain_shell()
        session.logout()
    assert ADMIN_WORD not in session.transcript

    with fixtures.ssh_login(test_user, None, forcepw_sshd.port) as session:
        assert session.outcome_of_login(old_password) == "refused", session.transcript

    # Flagging again changes something: it was not flagged any more.
    envelope = daemon.flag(test_user)
    assert envelope["data"]["updated"] == [test_user.name]


def _timed_plain_login(user, port):
    started = time.monotonic()
    with fixtures.ssh_login(user, user.password, port) as session:
        session.expect_plain_shell()
        session.logout()
    return time.monotonic() - started


def test_daemon_stopped_unflagged_and_flagged_users_still_log_in_quickly_fail_open(
        make_user, daemon, forcepw_sshd):
    unflagged, flagged = make_user(), make_user()
    daemon.flag(flagged)
    daemon.stop()
    assert daemon.proc.returncode is not None

    for user in (unflagged, flagged):
        elapsed = _timed_plain_login(user, forcepw_sshd.port)
        assert elapsed < FAIL_OPEN_LOGIN_BUDGET_S, f"{user.name}: login took {elapsed:.1f} s"


def test_flag_is_not_enforced_while_the_daemon_is_down_and_is_enforced_again_once_it_is_back(
        test_user, daemon, forcepw_sshd):
    daemon.flag(test_user)
    daemon.stop()
    _timed_plain_login(test_user, forcepw_sshd.port)

    daemon.start()  # same socket, same state dir
    assert daemon.status(test_user)["flagged"] == 1
    old_password, transcript = forced_change_over_ssh(test_user, forcepw_sshd.port)
    assert ADMIN_WORD in transcript.split("New password")[0], transcript
    assert daemon.status(test_user)["flagged"] == 0


def test_daemon_frozen_flagged_user_still_logs_in_within_the_module_timeout(
        test_user, daemon, forcepw_sshd):
    # A daemon that accepts connections (the kernel backlog does) but never answers: the module
    # must give up after its 2 s budget instead of hanging the login.
    daemon.flag(test_user)
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        elapsed = _timed_plain_login(test_user, forcepw_sshd.port)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    assert elapsed < FAIL_OPEN_LOGIN_BUDGET_S, f"login took {elapsed:.1f} s"
    assert daemon.status(test_user)["flagged"] == 1


def test_c10_flagged_user_with_key_and_tty_changes_password_via_passwd_and_the_flag_clears(
        test_user, daemon, pam_module, forcepw_pam_d, scratch_dir, make_sshd):
    # With a key there is no keyboard-interactive conversation: sshd runs /usr/bin/passwd (PAM
    # service "passwd" -> common-password) in the session. Our module is in common-account and
    # common-password of a private copy of /etc/pam.d, bind-mounted over /etc/pam.d only in the
    # mount namespace of this sshd and its children (passwd included).
    identity = fixtures.add_authorized_key(test_user, scratch_dir)
    server = make_sshd(fixtures.standard_stack(), private_pam_d=forcepw_pam_d)
    daemon.flag(test_user)
    assert_shadow_not_expired(test_user)
    new_password = fixtures.strong_password(unlike=test_user.password)

    with fixtures.ssh_login(test_user, None, server.port, identity=identity,
                            tty=True) as session:
        session.change_password(test_user.password, new_password, ask_current=True)
        session.expect([r"password updated successfully"])
        session.expect_eof()  # sshd ends the session after passwd
    transcript = session.transcript
    test_user.password = new_password

    assert ADMIN_WORD in transcript.split("Current password")[0], transcript
    assert "You must change your password now" in transcript, transcript
    status = daemon.status(test_user)
    assert status["flagged"] == 0, (status, transcript)
    assert status["last_change"]["service"] == "passwd", status

    with fixtures.ssh_login(test_user, None, server.port, identity=identity,
                            tty=True) as session:
        session.expect_plain_shell()
        session.logout()
    assert ADMIN_WORD not in session.transcript

    # The machine's own files never saw our module (only the namespace's copy did). An installed
    # forcepw may be there with its own module path; ours lives in a temp dir.
    for name in ("common-account", "common-password"):
        with open(f"/etc/pam.d/{name}") as f:
            assert pam_module not in f.read(), name


def test_a_flagged_user_logging_in_from_another_host_is_forced_and_history_names_that_host(
        test_user, daemon, module_lines, make_sshd, client_host):
    sshd = make_sshd(fixtures.standard_stack(*module_lines),
                     extra_config=[f"ListenAddress {client_host.server_address}"])
    daemon.flag(test_user)
    forced_change_over_ssh_from(test_user, sshd.port, client_host)
    events = daemon.ctl("--output=json", "history", test_user.name)
    refused = [e for e in json.loads(events.stdout)["data"]["events"]
               if e["event"] == "login_refused"]
    assert [e["detail"].split()[0] for e in refused] == [f"rhost={client_host.address}"]
    assert daemon.status(test_user)["flagged"] == 0


def forced_change_over_ssh_from(user, port, host):
    new_password = fixtures.strong_password(unlike=user.password)
    with fixtures.ssh_login(user, user.password, port, from_host=host) as session:
        session.expect([ADMIN_WORD])
        session.change_password(user.password, new_password)
        session.expect_shell()
        session.logout()
    user.password = new_password
