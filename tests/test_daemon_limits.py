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
from forcepw.server import Server
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


def test_root_connections_over_the_cap_are_told_busy_and_the_daemon_recovers(daemon):
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
    assert "uid 0 has too many connections" in daemon.log()


def test_a_plain_user_holding_connections_cannot_starve_root(daemon, make_user):
    """A user (or a flagged user's cron job) who opens many idle connections only uses up their
    own share: the PAM checks and the admin (root) are still answered."""
    alice, bob = make_user(), make_user()
    daemon.flag(bob)
    os.chmod(os.path.dirname(daemon.socket), 0o755)
    report_r, report_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: alice opens her share plus one
        try:
            os.setgroups([])
            os.setgid(alice.pw.pw_gid)
            os.setuid(alice.pw.pw_uid)
            held = []
            for _ in range(protocol.MAX_CONNECTIONS_PER_UID):
                held.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                held[-1].connect(daemon.socket)
            time.sleep(0.5)
            extra = client.ask(daemon.socket, protocol.check_login_request(alice.name, "sshd"))
            os.write(report_w, json.dumps(extra).encode())
            os.close(report_w)
            os.read(release_r, 1)
        finally:
            os._exit(0)
    os.close(report_w)
    os.close(release_r)
    try:
        extra = json.loads(os.read(report_r, 65536))
        assert extra["error"]["kind"] == protocol.ERR_BUSY
        check = protocol.check_login_request(bob.name, "sshd", caller_uid=0)
        assert client.ask(daemon.socket, check)["verdict"] == protocol.VERDICT_CHANGE_REQUIRED
        assert daemon.status(bob)["flagged"] == 1
        assert f"uid {alice.pw.pw_uid} has too many connections" in daemon.log()
    finally:
        os.write(release_w, b"x")
        os.waitpid(pid, 0)
        os.close(report_r)
        os.close(release_w)


def test_the_connection_budget_of_users_is_shared_and_roots_is_its_own():
    server = Server(None, None, max_connections=4, max_connections_per_uid=2)
    server.active_by_uid.update({1000: 2, 1001: 2})
    assert not server._over_limit(1000) and not server._over_limit(0)
    server.active_by_uid.update({1000: 1})
    assert server._over_limit(1000)  # 3 > 2 for this uid
    server.active_by_uid.update({1000: -1, 1002: 1})
    assert server._over_limit(1002)  # 5 > 4 for all users together
    server.active_by_uid.update({0: 4})
    assert not server._over_limit(0)  # root: 4 of its own 4
    server.active_by_uid.update({0: 1})
    assert server._over_limit(0)


@pytest.mark.parametrize("payload", [b'{"op":"call","function":"\\ud800"}\n',
                                     b"[" * 60000 + b"\n", b'{"op":"\\udfff"}\n'])
def test_lone_surrogates_and_deep_nesting_get_a_short_error_not_a_traceback(daemon, payload):
    size_before = len(daemon.log())
    reply = raw_exchange(daemon.socket, payload)
    assert reply["error"]["kind"] == protocol.ERR_BAD_REQUEST
    assert len(daemon.log()) - size_before < 200


def test_invalid_or_long_reported_items_do_not_skip_the_check(daemon, make_user):
    alice = make_user()
    daemon.flag(alice)
    line = (b'{"op":"check_login","user":"' + alice.name.encode() + b'","service":"sshd",'
            b'"rhost":"h\xffx","tty":"' + b"t" * 5000 + b'","ruser":"\\ud800","caller_uid":0}\n')
    reply = raw_exchange(daemon.socket, line)
    assert reply["verdict"] == protocol.VERDICT_CHANGE_REQUIRED


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
                           "--root-socket", str(tmp_path / "root.sock"),
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
    assert "ready on 1 systemd socket(s)" in output
    assert activator.returncode == 0


def test_the_root_socket_is_root_only_and_the_public_one_open_to_all(daemon, make_user):
    import stat
    assert stat.S_IMODE(os.stat(daemon.root_socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o666
    alice = make_user()
    os.chmod(os.path.dirname(daemon.socket), 0o755)

    def connect_both():
        for path in (daemon.socket, daemon.root_socket):
            try:
                client.ask(path, protocol.check_login_request(alice.name, "sshd"))
                print(path, "answered")
            except client.Unreachable as exc:
                print(path, "refused", "Permission denied" in str(exc))
        return 0

    status, out = run_as(alice, connect_both)
    assert out.splitlines() == [f"{daemon.socket} answered", f"{daemon.root_socket} refused True"]


def test_a_user_flooding_the_public_socket_cannot_make_a_login_skip_the_check(
        daemon, make_user, module_lines, make_pam_service):
    """The attack: fill the public socket's listen queue with connections that never send, so
    that the module's connect fails and it fails open. The module asks the root-only socket."""
    flagged, attacker = make_user(), make_user()
    daemon.flag(flagged)
    service = make_pam_service(["account required pam_permit.so", module_lines[0]])
    os.chmod(os.path.dirname(daemon.socket), 0o755)
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the attacker keeps the public queue full
        try:
            os.setgroups([])
            os.setgid(attacker.pw.pw_gid)
            os.setuid(attacker.pw.pw_uid)
            os.set_blocking(stop_r, False)
            held = []
            while True:
                try:
                    if os.read(stop_r, 1):
                        break
                except BlockingIOError:
                    pass
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    sock.connect(daemon.socket)
                    held.append(sock)
                except OSError:
                    sock.close()
                if len(held) > 500:
                    held.pop(0).close()
        finally:
            os._exit(0)
    os.close(stop_r)
    try:
        time.sleep(1)  # the flood is on
        results = [subprocess.run(["pamtester", service, flagged.name, "acct_mgmt"],
                                  capture_output=True, text=True, timeout=30)
                   for _ in range(5)]
        assert all(r.returncode != 0 and "new one required" in r.stderr for r in results), [
            r.stderr for r in results]
        # root's admin calls go through the root-only socket too
        assert daemon.status(flagged)["flagged"] == 1
    finally:
        os.write(stop_w, b"x")
        os.waitpid(pid, 0)
        os.close(stop_w)


def test_refusals_are_logged_at_most_once_a_minute_and_client_text_never_forges_a_line(
        daemon, make_user):
    alice = make_user()
    daemon.flag(alice)
    os.chmod(os.path.dirname(daemon.socket), 0o755)
    forged = "x\nforcepwd: INFO: user fpwtevil changed the password"

    def misbehave():
        for _ in range(50):
            client.ask(daemon.socket, protocol.password_changed_request(alice.name, "passwd"))
            client.ask(daemon.socket, protocol.check_login_request(alice.name, "sshd"))
        return 0

    assert run_as(alice, misbehave)[0] == 0
    # A user asking about themself is not a login: not logged, not recorded.
    assert "must change password" not in daemon.log()
    # What a login reports (here: rhost, which a remote client can influence) stays on its line.
    client.ask(daemon.socket, protocol.check_login_request(alice.name, "sshd", rhost=forged,
                                                           caller_uid=0))
    log = daemon.log()
    assert log.count(f"uid {alice.pw.pw_uid} was refused password_changed") == 1
    assert "\nforcepwd: INFO: user fpwtevil" not in log
    assert "rhost=x\\x0aforcepwd: INFO: user fpwtevil" in log


def test_a_plain_user_hammering_the_heaviest_allowed_calls_does_not_delay_logins(
        daemon, make_user):
    """Calls run beside the login checks, and one call is bounded (26 filters at most)."""
    alice, bob = make_user(), make_user()
    daemon.flag(bob)
    daemon.flag(alice)
    for _ in range(1000):  # alice's own history, as full as it gets: what her calls go over
        client.ask(daemon.root_socket,
                   protocol.check_login_request(alice.name, "sshd", caller_uid=0))
    os.chmod(os.path.dirname(daemon.socket), 0o755)
    heavy = {"api.filter.enable": "1", "api.sort.enable": "1"}
    for label in "abcdefghijklmnopqrstuvwxyz":
        heavy.update({f"api.filter.{label}.field": "*", f"api.filter.{label}.arg0": "o",
                      f"api.sort.{label}.field": "at"})
    too_heavy = dict(heavy, **{"api.filter.aa.field": "*", "api.filter.aa.arg0": "x"})
    reply = client.ask(daemon.socket, protocol.call_request("forcepw_history", too_heavy))
    assert "At most 26" in reply["result"]["metadata"]["reason"]

    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(alice.pw.pw_gid)
            os.setuid(alice.pw.pw_uid)
            os.set_blocking(stop_r, False)
            import threading

            def hammer():
                while True:
                    try:
                        if os.read(stop_r, 1):
                            return
                    except BlockingIOError:
                        pass
                    client.ask(daemon.socket, protocol.call_request("forcepw_history", heavy))
            threads = [threading.Thread(target=hammer)
                       for _ in range(protocol.MAX_CONNECTIONS_PER_UID)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            os._exit(0)
    os.close(stop_r)
    try:
        time.sleep(1)
        check = protocol.check_login_request(bob.name, "sshd", caller_uid=0)
        for _ in range(10):
            start = time.monotonic()
            verdict = client.ask(daemon.root_socket, check)["verdict"]
            assert verdict == protocol.VERDICT_CHANGE_REQUIRED
            assert time.monotonic() - start < 1.0
    finally:
        os.write(stop_w, b"x" * 16)
        os.waitpid(pid, 0)
        os.close(stop_w)
