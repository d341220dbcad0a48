"""`forcepwctl pam-lines` prints the same lines the pam-auth-update profile installs."""

import pathlib
import re

import pytest

from forcepw import cli, protocol

PROFILE = pathlib.Path(__file__).resolve().parents[1] / "pam-configs" / "forcepw"


def profile_lines():
    text = PROFILE.read_text()
    lines = {}
    for kind in ("Account", "Password"):
        match = re.search(rf"^{kind}:\n\t(.+)$", text, re.M)
        lines[kind.lower()] = " ".join(match.group(1).split())
    return lines


def test_pam_lines_match_the_pam_auth_update_profile():
    printed = cli.pam_lines(protocol.ROOT_SOCKET_PATH, cli.PAM_MODULE).splitlines()
    profile = profile_lines()
    assert printed == [f"account {profile['account']}", f"password {profile['password']}"]


def test_pam_lines_carry_a_custom_socket_and_module_path():
    printed = cli.pam_lines("/tmp/x/forcepwd.sock", "/opt/m/pam_forcepw.so")
    assert printed.splitlines()[0].endswith("/opt/m/pam_forcepw.so socket=/tmp/x/forcepwd.sock")


def test_pam_lines_refuse_white_space_which_pam_cannot_quote():
    with pytest.raises(cli.UsageError):
        cli.pam_lines("/tmp/a b/s.sock", cli.PAM_MODULE)
