"""Field case C06: programs that authenticate through PAM themselves (python-pam, pamtester) on a
private service `forcepw-test-<random>` = common-auth + common-account + our account line.

python-pam runs in a child process (the test's own interpreter) so that a crash of the host
process (SIGSEGV, as with pam_python) shows up as the child's exit status instead of killing
pytest."""

import json
import subprocess
import sys
import time

import pytest

import fixtures

pytestmark = pytest.mark.e2e

PAM_SUCCESS = 0
PAM_AUTH_ERR = 7
PAM_NEW_AUTHTOK_REQD = 12
HOST_BUDGET_S = 10.0  # generous: pam_unix alone costs ~2 s on a wrong password

# Reads [[user, password], ...] and the service from stdin; prints one result per attempt.
PYTHON_PAM_HOST = r"""
import json, sys, pam
request = json.load(sys.stdin)
results = []
for user, password in request["attempts"]:
    p = pam.pam()
    ok = p.authenticate(user, password, service=request["service"])
    results.append({"ok": ok, "code": p.code, "reason": p.reason})
print(json.dumps(results))
"""


def python_pam(service, attempts):
    """Runs python-pam's authenticate() (pam_authenticate + pam_acct_mgmt) in a child process.
    Returns (CompletedProcess, [ {ok, code, reason}, ... ] or None)."""
    proc = subprocess.run([sys.executable, "-c", PYTHON_PAM_HOST],
                          input=json.dumps({"service": service, "attempts": attempts}),
                          capture_output=True, text=True, timeout=60)
    try:
        results = json.loads(proc.stdout)
    except ValueError:
        results = None
    return proc, results


def pamtester(service, user, password):
    return subprocess.run(["pamtester", service, user.name, "authenticate", "acct_mgmt"],
                          input=password + "\n", capture_output=True, text=True, timeout=60)


@pytest.fixture
def service(make_pam_service, module_lines):
    account_line, _ = module_lines
    return make_pam_service(fixtures.auth_account_stack(account_line))


def test_c06_python_pam_flagged_user_is_refused_with_code_12_and_the_host_process_survives(
        test_user, daemon, service):
    daemon.flag(test_user)
    proc, results = python_pam(service, [[test_user.name, test_user.password]])
    assert proc.returncode == 0, f"python-pam host died: rc={proc.returncode}\n{proc.stderr}"
    assert len(results) == 1, results
    assert results[0]["ok"] is False and results[0]["code"] == PAM_NEW_AUTHTOK_REQD, results


def test_c06_python_pam_unflagged_user_authenticates(test_user, daemon, service):
    proc, results = python_pam(service, [[test_user.name, test_user.password]])
    assert proc.returncode == 0, f"python-pam host died: rc={proc.returncode}\n{proc.stderr}"
    assert results[0]["ok"] is True and results[0]["code"] == PAM_SUCCESS, results


def test_c06_python_pam_wrong_password_of_a_flagged_user_is_an_auth_error_not_a_change(
        test_user, daemon, service):
    daemon.flag(test_user)
    wrong = fixtures.strong_password(unlike=test_user.password)
    proc, results = python_pam(service, [[test_user.name, wrong]])
    assert proc.returncode == 0, proc.stderr
    assert results[0]["ok"] is False and results[0]["code"] == PAM_AUTH_ERR, results


def test_c06_python_pam_many_calls_in_one_host_process_neither_crash_nor_slow_it(
        make_user, daemon, service):
    flagged, unflagged = make_user(), make_user()
    daemon.flag(flagged)
    attempts = [[flagged.name, flagged.password], [unflagged.name, unflagged.password]] * 10
    started = time.monotonic()
    proc, results = python_pam(service, attempts)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"python-pam host died: rc={proc.returncode}\n{proc.stderr}"
    assert [(r["ok"], r["code"]) for r in results] == \
        [(False, PAM_NEW_AUTHTOK_REQD), (True, PAM_SUCCESS)] * 10, results
    assert elapsed < HOST_BUDGET_S, f"20 authentications took {elapsed:.1f} s"


def test_c06_python_pam_with_the_daemon_stopped_a_flagged_user_authenticates_fail_open(
        test_user, daemon, service):
    daemon.flag(test_user)
    daemon.stop()
    started = time.monotonic()
    proc, results = python_pam(service, [[test_user.name, test_user.password]])
    assert proc.returncode == 0, proc.stderr
    assert results[0]["ok"] is True and results[0]["code"] == PAM_SUCCESS, results
    assert time.monotonic() - started < HOST_BUDGET_S


def test_c06_pamtester_flagged_user_gets_new_authtok_required_and_is_told_why(
        test_user, daemon, service):
    daemon.flag(test_user)
    proc = pamtester(service, test_user, test_user.password)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "successfully authenticated" in proc.stdout
    assert "administrator" in proc.stdout  # the module's PAM_TEXT_INFO
    assert "new one required" in proc.stderr  # pam_strerror(PAM_NEW_AUTHTOK_REQD)


def test_c06_pamtester_unflagged_user_passes_authenticate_and_acct_mgmt(
        test_user, daemon, service):
    proc = pamtester(service, test_user, test_user.password)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "account management done" in proc.stdout
    assert "administrator" not in proc.stdout
