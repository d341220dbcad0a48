"""The one decision: when a flagged user must change the password now."""

from forcepw.policy import Policy, login_message


def test_a_flagged_user_logging_in_over_ssh_or_console_must_change():
    policy = Policy()
    for service in ("sshd", "login", "gdm-password", "sshd-forcepw-test-x"):
        assert policy.must_change_password(service, caller_uid=0, days_until_change_allowed=0)


def test_background_jobs_and_sudo_inside_a_session_are_not_forced():  # cases C03, C04
    policy = Policy()
    for service in ("cron", "atd", "systemd-user", "sudo", "sudo-i"):
        assert not policy.must_change_password(service, 0, 0), service


def test_su_by_root_is_maintenance_but_su_by_a_user_is_a_login():  # case C05
    policy = Policy()
    assert not policy.must_change_password("su", caller_uid=0, days_until_change_allowed=0)
    assert not policy.must_change_password("su-l", caller_uid=0, days_until_change_allowed=0)
    assert policy.must_change_password("su", caller_uid=1000, days_until_change_allowed=0)
    assert Policy(root_su_exempt=False).must_change_password("su", 0, 0)


def test_exempt_services_are_configurable():
    policy = Policy(exempt_services=frozenset({"sshd"}))
    assert not policy.must_change_password("sshd", 0, 0)
    assert policy.must_change_password("cron", 0, 0)


def test_not_forced_while_the_minimum_password_age_forbids_the_change():  # case C07
    assert not Policy().must_change_password("sshd", 0, days_until_change_allowed=3)


def test_the_login_message_names_the_administrator_and_the_reason():
    assert "administrator" in login_message("")
    assert "Reason: audit 2026" in login_message("audit 2026")


def test_a_change_clears_the_flag_when_the_user_made_it():
    policy = Policy()
    assert policy.is_users_own_change("passwd", caller_uid=1000, user_uid=1000)  # user ran passwd
    assert policy.is_users_own_change("sshd", caller_uid=0, user_uid=1000)  # forced at ssh login
    assert policy.is_users_own_change("login", caller_uid=0, user_uid=1000)  # console login


def test_root_resetting_the_password_keeps_the_flag_unless_configured():  # case C09
    for service in ("passwd", "chpasswd"):
        assert not Policy().is_users_own_change(service, caller_uid=0, user_uid=1000)
        assert Policy(admin_reset_clears=True).is_users_own_change(service, 0, 1000)
