"""WHM API 1 fidelity of forcepwctl against a running forcepwd (../shared/seed): every rule of
forcepasswordchange, the list/get/history functions, the shortcuts and the exit status."""

import json
import os
import subprocess
import urllib.parse

import pytest

from forcepw import cli


def call(daemon, function, *params, output="json"):
    """forcepwctl --output=FMT FUNCTION key=value ... -> (exit status, parsed envelope or text)."""
    proc = daemon.ctl(f"--output={output}", function, *params)
    body = json.loads(proc.stdout) if output == "json" and proc.stdout else proc.stdout
    return proc.returncode, body, proc.stderr


def users_json(flags):
    return "users_json=" + json.dumps(flags)


def flagged_users(daemon):
    status, env, _ = call(daemon, "list_forced_password_changes")
    assert status == 0, env
    return [record["user"] for record in env["data"]["users"]]


def assert_api_failure(daemon, status, env, *words):
    assert status == 1
    assert "data" not in env
    assert env["metadata"]["result"] == 0
    assert env["metadata"]["reason"].startswith("API failure: ")
    for word in words:
        assert word in env["metadata"]["reason"]
    assert flagged_users(daemon) == []


# --- forcepasswordchange: the envelope and the happy path ---------------------------------------

def test_flagging_uri_encoded_users_json_returns_the_whm_envelope(daemon, make_user):
    alice = make_user()
    encoded = urllib.parse.quote(json.dumps({alice.name: 1}), safe="")
    status, env, _ = call(daemon, "forcepasswordchange", f"users_json={encoded}",
                          "stop_on_failure=1")
    assert status == 0
    assert env == {"data": {"updated": [alice.name]},
                   "metadata": {"version": 1, "reason": "OK", "result": 1,
                                "command": "forcepasswordchange"}}
    assert flagged_users(daemon) == [alice.name]


def test_plain_json_works_and_value_zero_cancels_a_pending_change(daemon, make_user):
    alice = make_user()
    assert call(daemon, "forcepasswordchange", users_json({alice.name: 1}))[0] == 0
    status, env, _ = call(daemon, "forcepasswordchange", users_json({alice.name: 0}))
    assert (status, env["data"]["updated"], env["metadata"]["reason"]) == (0, [alice.name], "OK")
    assert flagged_users(daemon) == []


@pytest.mark.parametrize("value", [1, 2, "1", "yes", True, [0], {"a": 0}])
def test_truthy_values_set_the_flag(daemon, make_user, value):
    alice = make_user()
    status, env, _ = call(daemon, "forcepasswordchange", users_json({alice.name: value}))
    assert (status, env["data"]["updated"]) == (0, [alice.name])


@pytest.mark.parametrize("value", [0, "", None, False, "0", 0.0])
def test_falsy_values_clear_the_flag(daemon, make_user, value):
    alice = make_user()
    call(daemon, "forcepasswordchange", users_json({alice.name: 1}))
    status, env, _ = call(daemon, "forcepasswordchange", users_json({alice.name: value}))
    assert (status, env["data"]["updated"]) == (0, [alice.name])
    assert flagged_users(daemon) == []


def test_users_already_in_the_requested_state_are_skipped_and_nothing_left_is_nothing_to_do(
        daemon, make_user):
    alice, bob = make_user(), make_user()
    call(daemon, "forcepasswordchange", users_json({alice.name: 1}))
    status, env, _ = call(daemon, "forcepasswordchange", users_json({alice.name: 1, bob.name: 1}))
    assert (status, env["data"]["updated"]) == (0, [bob.name])
    status, env, _ = call(daemon, "forcepasswordchange",
                          users_json({alice.name: 1, bob.name: 1, "fpwtnobody": 0}))
    assert status == 0
    assert env["metadata"]["result"] == 1
    assert env["metadata"]["reason"] == "Nothing to do."


def test_users_are_processed_in_sorted_order(daemon, make_user):
    names = sorted(make_user().name for _ in range(3))
    status, env, _ = call(daemon, "forcepasswordchange",
                          users_json({name: 1 for name in reversed(names)}))
    assert env["data"]["updated"] == names


def test_a_reason_with_an_equals_sign_is_stored_and_listed(daemon, make_user):
    alice = make_user()
    status, env, _ = call(daemon, "forcepasswordchange", users_json({alice.name: 1}),
                          "reason=ticket=42%20audit")
    assert status == 0
    _, listed, _ = call(daemon, "list_forced_password_changes")
    [record] = listed["data"]["users"]
    assert record["reason"] == "ticket=42 audit"
    assert record["flagged_by"] == "root" and record["flagged_by_uid"] == 0
    assert record["uid"] == alice.pw.pw_uid
    assert record["flagged_at"].endswith("Z")


# --- forcepasswordchange: bad calls change nothing ------------------------------------------------

def test_missing_users_json_is_an_api_failure_naming_the_parameter(daemon):
    status, env, _ = call(daemon, "forcepasswordchange", "stop_on_failure=1")
    assert_api_failure(daemon, status, env, "users_json", "required")


@pytest.mark.parametrize("value, words", [
    ("{not json", ("not valid JSON",)),
    ('["fpwtalice"]', ("JSON object", "array")),
    ('"fpwtalice"', ("JSON object", "string")),
    ("42", ("JSON object",)),
])
def test_users_json_that_is_not_a_json_object_is_an_api_failure(daemon, value, words):
    status, env, _ = call(daemon, "forcepasswordchange", f"users_json={value}")
    assert_api_failure(daemon, status, env, *words)


def test_stop_on_failure_other_than_0_or_1_is_an_api_failure(daemon, make_user):
    status, env, _ = call(daemon, "forcepasswordchange", users_json({make_user().name: 1}),
                          "stop_on_failure=yes")
    assert_api_failure(daemon, status, env, "stop_on_failure")


@pytest.mark.parametrize("bad", ["", "a" * 257, "fpwt\x01x", "fpwt x", "fpwt\tx", "fpwt:x",
                                 "fpwt/x", "-fpwt", "fpwt\nx"])
def test_a_malformed_user_name_rejects_the_whole_call(daemon, make_user, bad):
    good = make_user()
    status, env, _ = call(daemon, "forcepasswordchange", users_json({good.name: 1, bad: 1}))
    assert status == 1
    assert env == {"metadata": {"version": 1, "reason": f"Invalid user(s): {bad}", "result": 0,
                                "command": "forcepasswordchange"}}
    assert flagged_users(daemon) == []


def test_all_malformed_names_are_listed_sorted(daemon):
    status, env, _ = call(daemon, "forcepasswordchange", users_json({"b c": 1, "a:b": 1}))
    assert env["metadata"]["reason"] == "Invalid user(s): a:b, b c"


# --- per-user failures ----------------------------------------------------------------------------

def test_a_user_nss_cannot_resolve_fails_alone_and_the_others_are_updated(daemon, make_user):
    alice = make_user()
    ghost = "fpwtzzghost"
    status, env, _ = call(daemon, "forcepasswordchange", users_json({alice.name: 1, ghost: 1}))
    assert status == 1
    assert env["metadata"]["result"] == 0
    assert env["data"]["updated"] == [alice.name]
    assert list(env["data"]["failed"]) == [ghost]
    assert env["metadata"]["reason"] == env["data"]["failed"][ghost]
    assert "does not exist" in env["metadata"]["reason"]


def test_several_failures_give_a_summary_naming_them_all(daemon):
    status, env, _ = call(daemon, "forcepasswordchange",
                          users_json({"fpwtzzghost1": 1, "fpwtzzghost2": 1}))
    assert env["metadata"]["reason"] == "Failed to update 2 users: fpwtzzghost1, fpwtzzghost2."
    assert sorted(env["data"]["failed"]) == ["fpwtzzghost1", "fpwtzzghost2"]


def test_stop_on_failure_halts_at_the_first_failure_without_rolling_back(daemon, make_user):
    first, last = sorted([make_user().name, make_user().name])
    ghost = first + "z"  # sorts between the two real users
    status, env, _ = call(daemon, "forcepasswordchange",
                          users_json({last: 1, ghost: 1, first: 1}), "stop_on_failure=1")
    assert status == 1
    assert env["data"]["updated"] == [first]
    assert list(env["data"]["failed"]) == [ghost]
    assert env["metadata"]["reason"] == env["data"]["failed"][ghost]
    assert flagged_users(daemon) == [first]


def test_an_account_without_a_usable_password_is_not_flagged_unless_allowed(daemon, make_user):
    keyonly = make_user()
    subprocess.run(["usermod", "-p", "*", keyonly.name], check=True)  # case C02
    status, env, _ = call(daemon, "forcepasswordchange", users_json({keyonly.name: 1}))
    assert status == 1
    assert "no usable password" in env["data"]["failed"][keyonly.name]
    assert flagged_users(daemon) == []
    status, env, _ = call(daemon, "forcepasswordchange", users_json({keyonly.name: 1}),
                          "allow_no_password=1")
    assert (status, env["data"]["updated"]) == (0, [keyonly.name])


def test_minimum_password_age_gives_a_warning_when_flagging(daemon, make_user):
    young = make_user()
    subprocess.run(["chage", "-m", "7", "-d", "today", young.name], check=True)  # case C07
    status, env, _ = call(daemon, "forcepasswordchange", users_json({young.name: 1}))
    assert status == 0
    [warning] = env["metadata"]["output"]["warnings"]
    assert young.name in warning and "minimum password age" in warning


# --- the CLI's grammar ----------------------------------------------------------------------------

def test_unknown_function_and_unknown_parameter_are_clear_errors(daemon):
    status, env, _ = call(daemon, "forcepasswordchangez", users_json({}))
    assert status == 1 and 'Unknown function "forcepasswordchangez"' in env["metadata"]["reason"]
    status, env, _ = call(daemon, "forcepasswordchange", users_json({}), "stop_on_failur=1")
    assert status == 1 and "stop_on_failur" in env["metadata"]["reason"]


def test_a_parameter_that_is_not_key_value_is_a_usage_error(daemon):
    status, _, stderr = call(daemon, "forcepasswordchange", "users_json")
    assert status == cli.EXIT_USAGE and "key=value" in stderr


def test_help_lists_every_function_with_its_parameters(daemon):
    proc = daemon.ctl("--help")
    assert proc.returncode == 0
    for name, spec in cli.protocol.FUNCTIONS.items():
        assert name in proc.stdout
        for param, _ in spec.params:
            assert f"{param}=" in proc.stdout


@pytest.mark.parametrize("output, marker", [("yaml", "---\n"), ("jsonpretty", '   "data" : {'),
                                            ("xml", "<result><data><updated>")])
def test_every_output_format_renders_a_live_answer(daemon, make_user, output, marker):
    alice = make_user()
    status, text, _ = call(daemon, "forcepasswordchange", users_json({alice.name: 1}),
                           output=output)
    assert status == 0 and marker in text and alice.name in text


def test_an_unreachable_daemon_is_a_clear_error(tmp_path):
    proc = subprocess.run([os.sys.executable, "-m", "forcepw.cli", "--socket",
                           str(tmp_path / "none.sock"), "list"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": cli.__file__.rsplit("/forcepw/", 1)[0]})
    assert proc.returncode == cli.EXIT_UNREACHABLE
    assert "cannot reach forcepwd" in proc.stderr


@pytest.mark.parametrize("reason, words", [("r" * 513, "at most 512 bytes"),
                                           ("two%0Alines", "control characters")])
def test_a_reason_too_long_or_with_control_characters_is_an_api_failure(daemon, make_user,
                                                                         reason, words):
    status, env, _ = call(daemon, "forcepasswordchange", users_json({make_user().name: 1}),
                          f"reason={reason}")
    assert_api_failure(daemon, status, env, "reason", words)


def test_a_reason_of_the_maximum_length_is_still_shown_at_login(daemon, make_user):
    alice = make_user()
    reason = "é" * 256  # 512 bytes
    assert call(daemon, "forcepasswordchange", users_json({alice.name: 1}), f"reason={reason}")[0] == 0
    from forcepw import client, protocol
    reply = client.ask(daemon.socket, protocol.check_login_request(alice.name, "sshd", caller_uid=0))
    assert reply["verdict"] == protocol.VERDICT_CHANGE_REQUIRED and reason in reply["message"]
    assert len(protocol.encode(reply)) <= protocol.MAX_PAM_REPLY_BYTES
