"""pam_forcepw.so inside a real PAM stack (pamtester), with no forcepwd: it must fail open.

Each test writes its own /etc/pam.d/forcepw-test-<random> naming the freshly built module by
absolute path, and removes it afterwards. Where a peer is needed it is a plain Unix socket in this
file (silent, or answering one scripted line), never the daemon: the daemon's end-to-end tests
live elsewhere. Needs root (writes /etc/pam.d) and pamtester.
"""

import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ACCOUNT_CONTROL = "[success=ok new_authtok_reqd=done default=ignore]"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="writes /etc/pam.d: needs root"),
    pytest.mark.skipif(shutil.which("pamtester") is None, reason="needs pamtester"),
]


@pytest.fixture(scope="module")
def module_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("pam_forcepw")
    subprocess.run(["make", "-s", "-C", str(ROOT / "pam_forcepw"), f"OUT={out}", "pam_forcepw.so"],
                   check=True)
    return out / "pam_forcepw.so"


@pytest.fixture
def pam_service(module_path):
    """write(args, password=False) -> name of a PAM service using the module with args."""
    paths = []

    def write(args, password=False):
        name = f"forcepw-test-{secrets.token_hex(6)}"
        lines = ["auth required pam_permit.so",
                 "account required pam_permit.so",
                 f"account {ACCOUNT_CONTROL} {module_path} {args}"]
        if password:  # pam_permit stands in for pam_unix: nothing is really changed
            lines += ["password required pam_permit.so",
                      f"password optional {module_path} {args}"]
        path = pathlib.Path("/etc/pam.d") / name
        paths.append(path)
        path.write_text("\n".join(lines) + "\n")
        return name

    try:
        yield write
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


class Peer:
    """A Unix socket listener in a thread. reply=None: accept and never answer; else read the
    request line, keep it in .requests, send reply (bytes) and close."""

    def __init__(self, path, reply=None):
        self.reply, self.requests, self.held = reply, [], []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is None:
                self.held.append(conn)
                continue
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                conn.sendall(self.reply)

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for conn in self.held:
            conn.close()


@pytest.fixture
def peer(tmp_path):
    peers = []

    def start(reply=None):
        peers.append(Peer(tmp_path / f"peer{len(peers)}.sock", reply))
        return peers[-1], tmp_path / f"peer{len(peers) - 1}.sock"

    yield start
    for p in peers:
        p.close()


def pamtester(service, operation, *items):
    """-> (returncode, stdout+stderr, seconds)."""
    args = ["pamtester", "-v"] + [a for item in items for a in ("-I", item)]
    start = time.monotonic()
    done = subprocess.run(args + [service, "root", operation], capture_output=True, text=True,
                          timeout=30)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


def verdict(name, message=""):
    return (json.dumps({"ok": True, "verdict": name, "message": message},
                       ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def test_account_with_nobody_listening_on_the_socket_fails_open_at_once(pam_service, tmp_path):
    service = pam_service(f"socket={tmp_path}/nothing-listens-here.sock")
    code, output, seconds = pamtester(service, "acct_mgmt")
    assert code == 0, output
    assert "account management done" in output
    assert seconds < 1.0


def test_account_with_a_peer_that_never_answers_fails_open_within_the_2s_budget(pam_service,
                                                                                 peer):
    _, path = peer(reply=None)
    service = pam_service(f"socket={path} timeout_ms=60000")  # clamped to 2000
    code, output, seconds = pamtester(service, "acct_mgmt")
    assert code == 0, output
    assert 1.9 <= seconds < 3.0


def test_timeout_ms_shortens_the_wait(pam_service, peer):
    _, path = peer(reply=None)
    code, output, seconds = pamtester(pam_service(f"socket={path} timeout_ms=200"), "acct_mgmt")
    assert code == 0, output
    assert seconds < 1.0


@pytest.mark.parametrize("reply", [
    b"garbage\n",
    b'{"ok":false,"error":{"kind":"internal","message":"boom"}}\n',
    b'{"ok":true,"verdict":"chan',
    verdict("no_such_verdict"),
    b"",
    b"x" * 10000,
], ids=["garbage", "error reply", "truncated", "unknown verdict", "closed at once", "flood"])
def test_account_with_a_reply_that_is_not_a_known_verdict_fails_open(pam_service, peer, reply):
    _, path = peer(reply=reply)
    code, output, _ = pamtester(pam_service(f"socket={path} bogus_option"), "acct_mgmt")
    assert code == 0, output


def test_allow_verdict_leaves_the_account_decision_to_the_rest_of_the_stack(pam_service, peer):
    listener, path = peer(reply=verdict("allow"))
    code, output, _ = pamtester(pam_service(f"socket={path}"), "acct_mgmt")
    assert code == 0, output
    assert len(listener.requests) == 1


def test_change_required_verdict_demands_a_new_password_and_shows_the_message(pam_service, peer):
    listener, path = peer(reply=verdict("change_required", "Change it now, please.\x1b[2J"))
    service = pam_service(f"socket={path}")
    code, output, _ = pamtester(service, "acct_mgmt", "rhost=::1", "tty=ssh", "ruser=carol")
    assert code != 0
    assert "new one required" in output
    assert "Change it now, please.?[2J" in output  # escape sequences are defused
    assert listener.requests == [
        (f'{{"op":"check_login","user":"root","service":"{service}","rhost":"::1","tty":"ssh",'
         f'"ruser":"carol","caller_uid":0}}\n').encode()]


def test_change_required_with_an_empty_message_shows_the_default_text(pam_service, peer):
    _, path = peer(reply=verdict("change_required"))
    code, output, _ = pamtester(pam_service(f"socket={path}"), "acct_mgmt")
    assert code != 0
    assert "An administrator requires you to change your password now." in output


@pytest.mark.parametrize("reply", [verdict("cleared"), b"garbage\n"], ids=["cleared", "garbage"])
def test_password_change_is_reported_once_after_the_update_and_never_fails(pam_service, peer,
                                                                           reply):
    listener, path = peer(reply=reply)
    code, output, _ = pamtester(pam_service(f"socket={path}", password=True), "chauthtok")
    assert code == 0, output
    assert [json.loads(r)["op"] for r in listener.requests] == ["password_changed"]


def test_password_change_with_the_daemon_down_still_succeeds(pam_service, tmp_path):
    service = pam_service(f"socket={tmp_path}/nothing.sock", password=True)
    code, output, _ = pamtester(service, "chauthtok")
    assert code == 0, output


def test_a_socket_served_by_a_non_root_process_is_not_trusted(pam_service):
    """A plain user who manages to put a socket at the module's path (here: a world-writable
    directory) answering change_required for everyone must not force anybody's login."""
    shared = pathlib.Path(tempfile.mkdtemp(prefix="forcepw-test-spoof-"))
    os.chmod(shared, 0o1777)
    path = shared / "spoof.sock"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, then serve change_required to every connection
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(8)
            os.write(ready_w, b"1")
            while True:
                conn, _ = listener.accept()
                conn.recv(65536)
                conn.sendall(verdict("change_required", "spoofed"))
                conn.close()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1", "the non-root peer could not start"
        service = pam_service(f"socket={path}")
        code, output, _ = pamtester(service, "acct_mgmt")
        assert code == 0, output
        assert "spoofed" not in output and "new one required" not in output
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready_r)
        shutil.rmtree(shared, ignore_errors=True)
