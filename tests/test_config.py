"""The settings file: defaults, every key, refusal of a broken file, and reload on SIGHUP."""

import signal
import time

import pytest

from forcepw import client, config, protocol
from forcepw.policy import DEFAULT_EXEMPT_SERVICES


def write(tmp_path, text):
    path = tmp_path / "forcepwd.conf"
    path.write_text(text)
    return str(path)


def test_a_missing_file_means_the_defaults(tmp_path):
    settings = config.load(str(tmp_path / "absent.conf"))
    assert settings.policy.exempt_services == DEFAULT_EXEMPT_SERVICES
    assert settings.policy.root_su_exempt and not settings.policy.admin_reset_clears
    assert settings.admin_group_gid is None


def test_every_key_is_read(tmp_path):
    settings = config.load(write(tmp_path, """
[forcepwd]
admin_group = root          # gid 0
exempt_services = cron, atd sudo
enforce_su_by_root = yes
admin_reset_clears = true
"""))
    assert settings.admin_group_gid == 0
    assert settings.policy.exempt_services == {"cron", "atd", "sudo"}
    assert not settings.policy.root_su_exempt and settings.policy.admin_reset_clears


@pytest.mark.parametrize("text, words", [
    ("[forcepwd]\nadmin_grup = x\n", "admin_grup"),
    ("[other]\n", "other"),
    ("[forcepwd]\nenforce_su_by_root = maybe\n", "maybe"),
    ("no section\n", "section"),
])
def test_a_broken_file_is_refused_with_a_clear_reason(tmp_path, text, words):
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, text))
    assert words in str(err.value)


def test_the_daemon_refuses_to_start_with_a_broken_file(daemon_factory):
    with pytest.raises(RuntimeError) as err:  # fixtures: "exited ... before it was ready"
        daemon_factory(config_text="[forcepwd]\nbogus = 1\n")
    assert "exited with 1" in str(err.value) and "bogus" in str(err.value)


def test_sighup_reloads_the_settings_and_a_broken_file_keeps_them(daemon_factory, make_user):
    alice = make_user()
    daemon = daemon_factory()
    daemon.flag(alice)
    check = protocol.check_login_request(alice.name, "sshd", caller_uid=0)
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_CHANGE_REQUIRED

    def reload(text):
        with open(daemon.config, "w") as f:
            f.write(text)
        before = daemon.log().count("SIGHUP")
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while daemon.log().count("SIGHUP") == before and time.monotonic() < deadline:
            time.sleep(0.05)

    reload("[forcepwd]\nexempt_services = sshd\n")
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_ALLOW
    reload("[forcepwd]\nexempt_services = \nbogus = 1\n")
    assert "settings not reloaded" in daemon.log()
    assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_ALLOW


def test_the_shipped_example_file_is_valid_and_states_the_defaults():
    import pathlib
    example = pathlib.Path(__file__).resolve().parents[1] / "etc" / "forcepwd.conf"
    assert config.load(str(example)) == config.load("/nonexistent/forcepwd.conf")
    text = example.read_text()
    assert f"#exempt_services = {' '.join(sorted(DEFAULT_EXEMPT_SERVICES))}" in text
    for key in config.KEYS:
        assert f"#{key} =" in text


def test_an_admin_group_that_does_not_exist_leaves_root_the_only_admin(tmp_path, caplog):
    settings = config.load(write(tmp_path, "[forcepwd]\nadmin_group = fpwt-no-such-group\n"))
    assert settings.admin_group_gid is None
    assert "fpwt-no-such-group" in caplog.text


def test_a_settings_path_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    import os
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(config.ConfigError) as err:
            config.load(str(path))
        assert "not a regular file" in str(err.value)
