"""The field cases (../shared/cases/field-cases.md) end to end, each on the real program people
met it with: ssh, su, chpasswd, PAM services of background jobs, NSS beyond /etc/passwd. Where a
case needs our module in the machine's shared stacks (common-account, common-password), the
program runs in a private mount namespace over a copy of /etc/pam.d (fixtures.private_pam_d):
the machine's own files never change. C02, C07: test_whm_api.py and test_admin_functions.py;
C06: test_e2e_python_pam.py; C10: test_e2e_ssh.py."""

import json
import subprocess
import time

import pexpect
import pytest

import fixtures
from forcepw import client, protocol

pytestmark = pytest.mark.e2e

NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)


def history(daemon, user):
    proc = daemon.ctl("--output=json", "history", user.name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["data"]["events"]


def test_c01_a_flagged_key_login_without_a_tty_is_refused_at_once_and_the_admin_sees_why(
        test_user, daemon, forcepw_sshd, scratch_dir):
    # sshd 9.2 shows no PAM message to a command without a terminal: what the user sees is
    # sshd's own text, which names the way out (a TTY: ssh -t, see test_e2e_ssh's C10 test).
    key = fixtures.add_authorized_key(test_user, scratch_dir)
    daemon.flag(test_user)
    start = time.monotonic()
    proc = run([fixtures.SSH, *fixtures.ssh_command(test_user, forcepw_sshd.port, identity=key,
                                                    command=fixtures.SHELL_PROBE)],
               stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    seen = proc.stdout + proc.stderr
    assert proc.returncode != 0 and fixtures.SHELL_PROBE_ANSWER not in seen
    assert "Password change required but no TTY available" in seen, seen
    assert elapsed < 10
    last = history(daemon, test_user)[-1]
    assert (last["event"], last["service"]) == ("login_refused", forcepw_sshd.service)
    assert "rhost=127.0.0.1" in last["detail"]
    assert f"user {test_user.name} must change password" in daemon.log()


@pytest.mark.parametrize("service", ["cron", "atd", "systemd-user", "sudo"])
def test_c03_c04_background_jobs_and_sudo_are_not_forced_but_a_console_login_is(
        test_user, daemon, forcepw_pam_d, service):
    daemon.flag(test_user)
    proc = run(fixtures.with_private_pam_d(
        forcepw_pam_d, ["pamtester", service, test_user.name, "acct_mgmt"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(fixtures.with_private_pam_d(
        forcepw_pam_d, ["pamtester", "login", test_user.name, "acct_mgmt"]))
    assert proc.returncode != 0 and "new one required" in proc.stderr


def test_c05_root_running_su_into_a_flagged_account_is_not_forced(
        test_user, daemon, forcepw_pam_d):
    daemon.flag(test_user)
    proc = run(fixtures.with_private_pam_d(
        forcepw_pam_d, ["su", "-", test_user.name, "-c", fixtures.SHELL_PROBE]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fixtures.SHELL_PROBE_ANSWER in proc.stdout
    assert daemon.status(test_user)["flagged"] == 1


def test_c05_a_user_running_su_into_a_flagged_account_must_change_it_and_that_clears_the_flag(
        make_user, daemon, forcepw_pam_d):
    alice, bob = make_user(), make_user()
    daemon.flag(alice)
    inner = f"su - {alice.name} -c '{fixtures.SHELL_PROBE}'"
    child = pexpect.spawn(
        "/usr/bin/env", fixtures.with_private_pam_d(
            forcepw_pam_d, ["su", "-s", "/bin/sh", bob.name, "-c", inner]),
        encoding="utf-8", timeout=fixtures.EXPECT_TIMEOUT, env={"PATH": "/usr/bin:/bin",
                                                                "LANG": "C"})
    try:
        child.expect(r"Password: ?")
        child.sendline(alice.password)
        child.expect("administrator")
        new_password = fixtures.strong_password(unlike=alice.password)
        child.expect(fixtures.PROMPT_CURRENT)
        child.sendline(alice.password)
        child.expect(fixtures.PROMPT_NEW)
        child.sendline(new_password)
        child.expect(fixtures.PROMPT_RETYPE)
        child.sendline(new_password)
        child.expect(fixtures.SHELL_PROBE_ANSWER)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert daemon.status(alice)["flagged"] == 0
    assert history(daemon, alice)[-1]["event"] == "changed_by_user"


def test_c08_a_user_only_nss_knows_of_can_be_flagged_and_is_forced(daemon_factory, scratch_dir):
    # nss_wrapper gives the daemon an NSS source besides /etc/passwd, as LDAP or SSSD would.
    name, uid = "fpwtldap" + scratch_dir.name[-6:].lower().replace("_", "x"), 45678
    assert run(["getent", "passwd", name]).returncode != 0  # not a local user
    passwd, group = scratch_dir / "passwd", scratch_dir / "group"
    passwd.write_text(f"root:x:0:0:root:/root:/bin/bash\n"
                      f"{name}:x:{uid}:{uid}:directory user:/home/{name}:/bin/bash\n")
    group.write_text(f"root:x:0:\n{name}:x:{uid}:\n")
    daemon = daemon_factory(env={"LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_PASSWD": str(passwd),
                                 "NSS_WRAPPER_GROUP": str(group)})
    proc, env = daemon.forcepasswordchange({name: 1})
    assert (proc.returncode, env["data"]["updated"]) == (0, [name]), proc.stdout
    assert daemon.status(name)["uid"] == uid
    check = protocol.check_login_request(name, "sshd", caller_uid=0)
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_CHANGE_REQUIRED
    proc, env = daemon.forcepasswordchange({name + "x": 1})
    assert "does not exist" in env["data"]["failed"][name + "x"]


def test_c09_root_resetting_a_flagged_users_password_with_chpasswd_keeps_the_flag(
        test_user, daemon, forcepw_pam_d):
    daemon.flag(test_user)
    new_password = fixtures.strong_password(unlike=test_user.password)
    proc = run(fixtures.with_private_pam_d(forcepw_pam_d, ["chpasswd"]),
               input=f"{test_user.name}:{new_password}\n")
    assert proc.returncode == 0, proc.stderr
    assert daemon.status(test_user)["flagged"] == 1
    last = history(daemon, test_user)[-1]
    assert (last["event"], last["service"], last["actor"]) == (
        "reset_by_admin", "chpasswd", "root")
