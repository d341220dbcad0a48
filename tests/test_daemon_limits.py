"""forcepwd's explicit limits and its life cycle, against a running daemon: request size, read
timeout, connection cap, authorization of the PAM operations, clean stop, durability."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import fixtures
from forcepw import client, protocol
from test_admin_functions import run_as


def raw_exchange(socket_path, payload, shutdown=True):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(protocol.REQUEST_READ_TIMEOUT_S + 10)
        sock.connect(socket_path)
        sock.sendall(payload)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def test_a_request_over_the_size_limit_is_refused_as_too_large(daemon):
    payload = b'{"op":"call","function":"' + b"x" * protocol.MAX_REQUEST_BYTES + b'"}\n'
    reply = raw_exchange(daemon.socket, payload)
    assert reply["error"]["kind"] == protocol.ERR_TOO_LARGE


def test_a_request_just_under_the_limit_is_answered(daemon):
    padding = "x" * (protocol.MAX_REQUEST_BYTES - 200)
    request = protocol.call_request("list_forced_password_changes", {"api.x": padding})
    reply = client.ask(daemon.socket, request)
    assert reply["ok"] and reply["result"]["metadata"]["result"] == 0  # unknown api.x argument


def test_a_client_that_never_finishes_its_request_is_cut_off_after_the_read_timeout(daemon):
    start = time.monotonic()
    reply = raw_exchange(daemon.socket, b'{"op":"call"', shutdown=False)
    elapsed = time.monotonic() - start
    assert reply["error"]["kind"] == protocol.ERR_TIMEOUT
    assert protocol.REQUEST_READ_TIMEOUT_S - 0.5 < elapsed < protocol.REQUEST_READ_TIMEOUT_S + 5


def test_connections_over_the_cap_are_told_busy_and_the_daemon_recovers(daemon):
    idle = []
    try:
        for _ in range(protocol.MAX_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket)
            idle.append(sock)
        # The daemon accepts them one by one; on a loaded machine that takes a moment.
        deadline = time.monotonic() + protocol.REQUEST_READ_TIMEOUT_S - 1
        while True:
            reply = client.ask(daemon.socket,
                               protocol.call_request("list_forced_password_changes", {}))
            if not reply["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert reply["error"]["kind"] == protocol.ERR_BUSY
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.5)
    reply = client.ask(daemon.socket, protocol.call_request("list_forced_password_changes", {}))
    assert reply["ok"]


@pytest.mark.parametrize("payload", [b"\n", b"garbage\n", b'{"op":"check_login"}\n', b""])
def test_malformed_requests_get_a_bad_request_error(daemon, payload):
    reply = raw_exchange(daemon.socket, payload)
    assert reply["ok"] is False and reply["error"]["kind"] == protocol.ERR_BAD_REQUEST


def test_only_root_may_report_a_password_change_or_ask_about_another_user(daemon, make_user):
    alice, bob = make_user(), make_user()
    daemon.flag(alice)
    os.chmod(os.path.dirname(daemon.socket), 0o755)

    def ask_as_alice():
        for request in (protocol.password_changed_request(alice.name, "passwd"),
                        protocol.check_login_request(bob.name, "sshd"),
                        protocol.check_login_request(alice.name, "sshd")):
            print(json.dumps(client.ask(daemon.socket, request)))
        return 0

    status, out = run_as(alice, ask_as_alice)
    assert status == 0, out
    changed, other, own = (json.loads(line) for line in out.splitlines())
    assert changed["error"]["kind"] == protocol.ERR_FORBIDDEN
    assert other["error"]["kind"] == protocol.ERR_FORBIDDEN
    assert own["verdict"] == protocol.VERDICT_CHANGE_REQUIRED  # a user may ask about themself
    assert daemon.forcepasswordchange({alice.name: 1})[1]["metadata"]["reason"] == "Nothing to do."


def test_sigterm_stops_the_daemon_cleanly_and_removes_its_socket(daemon):
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert not os.path.exists(daemon.socket)
    assert "stopping" in daemon.log()


def test_sighup_does_not_kill_the_daemon(daemon):  # reloading itself: test_config.py
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert daemon.proc.poll() is None
    assert client.ask(daemon.socket, protocol.call_request("list_forced_password_changes", {}))["ok"]


def test_a_second_daemon_on_the_same_socket_refuses_to_start(daemon, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "forcepw.daemon", "--socket", daemon.socket,
                           "--state-dir", str(tmp_path / "state"), "--config", daemon.config],
                          env={**os.environ, "PYTHONPATH": str(fixtures.DAEMON_SRC)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "already answers" in proc.stderr


def test_an_acknowledged_flag_survives_the_daemon_being_killed(daemon, make_user):
    alice = make_user()
    daemon.flag(alice)  # acknowledged: committed and fsync'ed before the reply
    daemon.proc.kill()  # SIGKILL: no clean shutdown, no chance to flush anything
    daemon.proc.wait(timeout=10)
    daemon.start()  # same socket (left behind by the dead daemon), same state dir
    assert daemon.status(alice)["flagged"] == 1


def test_socket_activation_by_systemd_socket_activate(tmp_path, make_user):
    alice = make_user()
    sock = tmp_path / "forcepwd.sock"
    activator = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(sock), "-E", f"PYTHONPATH={fixtures.DAEMON_SRC}",
         sys.executable, "-m", "forcepw.daemon", "--state-dir", str(tmp_path / "state"),
         "--config", str(tmp_path / "none.conf")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The first connection starts forcepwd, which takes over the listening socket.
        flag = protocol.call_request("forcepasswordchange", {"users_json": f'{{"{alice.name}":1}}'})
        assert client.ask(str(sock), flag)["result"]["data"]["updated"] == [alice.name]
        listed = client.ask(str(sock), protocol.call_request("list_forced_password_changes", {}))
        assert [u["user"] for u in listed["result"]["data"]["users"]] == [alice.name]
    finally:
        activator.terminate()
        output, _ = activator.communicate(timeout=10)
    assert "ready on systemd socket" in output
    assert activator.returncode == 0
