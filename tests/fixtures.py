"""Helpers for the end-to-end tests: the one place that creates users, PAM service files, a private
sshd, a forcepwd from the tree, the PAM module built from the tree, and drives the real ssh client.

Every helper is a context manager that undoes what it did, also when the test fails or is
interrupted. Things that could outlive a crashed run are marked with the pid of the process that
made them (a user's GECOS field, a comment in a PAM file, a file next to sshd's config), so that
`sweep_stale()` can remove what belongs to a dead run without touching a concurrent one. Child
processes (forcepwd, sshd) get PR_SET_PDEATHSIG so they die with the test process.

Nothing here is mocked: real useradd/chpasswd, real /usr/sbin/sshd, real /usr/bin/ssh, real
Linux-PAM stacks that @include the machine's common-* files.
"""

import contextlib
import ctypes
import glob
import io
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import pexpect

REPO = Path(__file__).resolve().parents[1]
DAEMON_SRC = REPO / "daemon"
PAM_SRC = REPO / "pam_forcepw"

USER_PREFIX = "fpwt"
PAM_SERVICE_PREFIX = "forcepw-test"
SSHD_SERVICE_PREFIX = "sshd-forcepw-test"
PAM_D = Path("/etc/pam.d")
OWNER_TAG = "forcepw-e2e owner="  # followed by the pid of the test process that made the thing

SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
PRIVSEP_DIR = Path("/run/sshd")

EXPECT_TIMEOUT = 20  # seconds; every pexpect wait uses at most this
STARTUP_TIMEOUT = 15  # seconds to wait for forcepwd / sshd to accept connections
SHELL_PROBE = "echo FPWT-$((6*7))"  # the shell expands it; the echoed command line does not match
SHELL_PROBE_ANSWER = "FPWT-42"


def _owner_tag():
    return f"{OWNER_TAG}{os.getpid()}"


def _pid_alive(pid):
    """True while `pid` runs; a zombie (killed, not yet reaped) counts as dead."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+[ZX]", status, re.M)


def _owner_pid(text):
    match = re.search(re.escape(OWNER_TAG) + r"(\d+)", text or "")
    return int(match.group(1)) if match else None


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies, even by SIGKILL."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_process(proc, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` seconds; always reaps."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def _read_text(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _env_with_daemon_on_path(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(DAEMON_SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra or {})
    return env


TEMP_PREFIX = "forcepw-e2e-"


def _make_temp_dir(kind):
    """A temp dir /tmp/forcepw-e2e-<kind>-XXXX, mode 0755 (sshd, pam and users read in it),
    with an `owner` file so that sweep_stale() can remove it after a crash."""
    path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-"))
    os.chmod(path, 0o755)
    (path / "owner").write_text(_owner_tag())
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(predicate, timeout, what, proc=None, log_path=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n"
                               f"{_read_text(log_path) if log_path else ''}")
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s:\n"
                       f"{_read_text(log_path) if log_path else ''}")


def _unix_socket_answers(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _tcp_port_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# --- passwords and users ----------------------------------------------------------------------

_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_.,+=%@"


def strong_password(length=20, unlike=None):
    """A random password that pam_unix `obscure` accepts as a new password.

    pam_unix rejects a new password that is a palindrome, a case change or rotation of the old one,
    "too simple", or "too similar" (at least half of the old password's characters occur in the new
    one). We use all four character classes and, given `unlike`, keep drawing until fewer than a
    third of its characters occur in the new password. No ':' (chpasswd) and no quotes or
    backslashes (nothing here needs them).
    """
    while True:
        candidate = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
        classes = [any(c in cls for c in candidate) for cls in
                   (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_.,+=%@")]
        if not all(classes):
            continue
        if unlike is not None:
            shared = sum(1 for c in unlike if c in candidate)
            if shared * 3 >= len(unlike):
                continue
        return candidate


class TestUser:
    """A local user made for one test."""

    __test__ = False  # not a pytest test class

    def __init__(self, name, password):
        self.name = name
        self.password = password

    @property
    def pw(self):
        return pwd.getpwnam(self.name)

    @property
    def home(self):
        return Path(self.pw.pw_dir)

    def shadow_fields(self):
        """This user's line of /etc/shadow, split at ':'."""
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == self.name:
                return fields
        raise KeyError(self.name)

    def set_password(self, password):
        """Admin reset through chpasswd (as root)."""
        subprocess.run(["chpasswd"], input=f"{self.name}:{password}\n", text=True, check=True,
                       timeout=30)
        self.password = password

    def __repr__(self):
        return f"TestUser({self.name!r})"


def _kill_user_processes(uid):
    """Processes left by a test user's sessions (sshd children, shells) - all started by a test."""
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        match = re.search(r"^Uid:\s+(\d+)\s+(\d+)", text, re.M)
        if match and uid in (int(match.group(1)), int(match.group(2))):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(status.split("/")[2]), signal.SIGKILL)


def _remove_user(name):
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    _kill_user_processes(uid)
    for _ in range(20):
        result = subprocess.run(["userdel", "-r", name], capture_output=True, text=True,
                                timeout=30)
        # 12: "can't remove home dir" (already gone) still removes the user.
        if result.returncode in (0, 12) or name not in [p.pw_name for p in pwd.getpwall()]:
            return
        time.sleep(0.25)
        _kill_user_processes(uid)
    raise RuntimeError(f"userdel -r {name} failed: {result.stderr}")


@contextlib.contextmanager
def test_user(password=None):
    """A local user `fpwt<random>` with home, /bin/bash and a strong password; userdel -r after."""
    name = USER_PREFIX + secrets.token_hex(4)
    password = password or strong_password()
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-c", _owner_tag(), name],
                   check=True, capture_output=True, timeout=30)
    try:
        user = TestUser(name, password)
        user.set_password(password)
        yield user
    finally:
        _remove_user(name)


test_user.__test__ = False  # not a pytest test function


@contextlib.contextmanager
def temp_dir(kind="scratch"):
    """A temp directory, readable by everyone, removed afterwards."""
    path = _make_temp_dir(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def add_authorized_key(user, key_dir):
    """An ed25519 key pair in key_dir; its public half in ~user/.ssh/authorized_keys, owned by
    the user with the modes sshd's StrictModes wants. Returns the private key path."""
    key = Path(key_dir) / f"id_ed25519_{user.name}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user.name,
                    "-f", str(key)], check=True, capture_output=True, timeout=30)
    ssh_dir = user.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(f"{key}.pub").read_text())
    authorized.chmod(0o600)
    for path in (ssh_dir, authorized):
        os.chown(path, user.pw.pw_uid, user.pw.pw_gid)
    return key


# --- forcepwd ---------------------------------------------------------------------------------

def users_json_arg(flags, encode=True):
    """{"alice": 1} -> users_json=%7B%22alice%22%3A1%7D (URI-encoded like whmapi1) or plain."""
    value = json.dumps(flags, separators=(",", ":"))
    return "users_json=" + (urllib.parse.quote(value, safe="") if encode else value)


class Daemon:
    """A running forcepwd from the tree, and the CLI pointed at it."""

    def __init__(self, socket_path, state_dir, log_path, extra_args=(), env=None, config=None):
        self.socket = str(socket_path)
        # The root-only socket, which the PAM module asks (see protocol.ROOT_SOCKET_PATH).
        self.root_socket = str(Path(socket_path).with_name("forcepwd-root.sock"))
        # Never the machine's /etc/forcepw/forcepwd.conf: a test's settings are its own.
        self.config = str(config or Path(state_dir).parent / "forcepwd.conf")
        self.state_dir = str(state_dir)
        self.log_path = str(log_path)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc = None

    def start(self):
        """Starts forcepwd (again: same socket, same state) and waits until the socket answers."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "forcepw.daemon", "--socket", self.socket,
                 "--root-socket", self.root_socket, "--state-dir", self.state_dir,
                 "--config", self.config, *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_env_with_daemon_on_path(self.env), preexec_fn=_die_with_parent)
        _wait_until(lambda: _unix_socket_answers(self.socket), STARTUP_TIMEOUT, "forcepwd",
                    self.proc, self.log_path)

    def log(self):
        return _read_text(self.log_path)

    def ctl(self, *args, timeout=30):
        """forcepwctl with the test's Python, as root: the root-only socket (FORCEPW_SOCKET)."""
        return subprocess.run([sys.executable, "-m", "forcepw.cli", *args],
                              env=_env_with_daemon_on_path({"FORCEPW_SOCKET": self.root_socket}),
                              capture_output=True, text=True, timeout=timeout)

    def forcepasswordchange(self, flags, stop_on_failure=1, encode=True):
        """Runs `forcepwctl --socket S --output=json forcepasswordchange ...` -> (proc, envelope).
        The envelope is None if stdout is not JSON."""
        proc = self.ctl("--socket", self.socket, "--output=json", "forcepasswordchange",
                        users_json_arg(flags, encode), f"stop_on_failure={stop_on_failure}")
        try:
            envelope = json.loads(proc.stdout)
        except ValueError:
            envelope = None
        return proc, envelope

    def _set(self, user, value):
        name = getattr(user, "name", user)
        proc, envelope = self.forcepasswordchange({name: value})
        if proc.returncode != 0 or envelope is None or envelope["metadata"]["result"] != 1:
            raise AssertionError(f"forcepasswordchange {name}={value} failed: rc={proc.returncode}"
                                 f"\nstdout={proc.stdout}\nstderr={proc.stderr}")
        return envelope

    def flag(self, user):
        return self._set(user, 1)

    def unflag(self, user):
        return self._set(user, 0)

    def status(self, user):
        """`forcepwctl --output=json get_forced_password_change user=U` -> its data dict."""
        name = getattr(user, "name", user)
        proc = self.ctl("--output=json", "get_forced_password_change", f"user={name}")
        if proc.returncode != 0:
            raise AssertionError(f"get_forced_password_change {name} failed: rc={proc.returncode}"
                                 f"\nstdout={proc.stdout}\nstderr={proc.stderr}")
        return json.loads(proc.stdout)["data"]

    def pam_lines(self, module_path):
        """`forcepwctl --socket S pam-lines --module M` -> (account_line, password_line), S the
        root-only socket, as the module uses by default."""
        proc = self.ctl("--socket", self.root_socket, "pam-lines", "--module", str(module_path))
        if proc.returncode != 0:
            raise AssertionError(f"pam-lines failed: rc={proc.returncode}\n{proc.stderr}")
        lines = [l for l in proc.stdout.splitlines() if l.strip() and not l.startswith("#")]
        account = [l for l in lines if l.split()[0] == "account"]
        password = [l for l in lines if l.split()[0] == "password"]
        if len(account) != 1 or len(password) != 1:
            raise AssertionError(f"pam-lines did not print one account and one password line:\n"
                                 f"{proc.stdout}")
        return account[0], password[0]

    def stop(self):
        if self.proc is not None:
            _stop_process(self.proc)


@contextlib.contextmanager
def daemon(extra_args=(), env=None, config_text=""):
    """forcepwd from the tree on a temp socket with a temp state dir; SIGTERM (then kill) after.
    env: extra environment variables; config_text: its settings file (config.py)."""
    tmp = _make_temp_dir("daemon")
    try:
        state_dir = tmp / "state"
        state_dir.mkdir()
        config = tmp / "forcepwd.conf"
        config.write_text(config_text)
        running = Daemon(tmp / "forcepwd.sock", state_dir, tmp / "forcepwd.stderr", extra_args,
                         env, config)
        try:
            running.start()
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the PAM module ---------------------------------------------------------------------------

@contextlib.contextmanager
def pam_module():
    """pam_forcepw.so built from the tree's sources into a temp dir (`make -C pam_forcepw OUT=`,
    so nothing is written into the tree). Yields its absolute path."""
    tmp = _make_temp_dir("module")
    try:
        result = subprocess.run(["make", "-C", str(PAM_SRC), f"OUT={tmp}", "pam_forcepw.so"],
                                capture_output=True, text=True, timeout=300)
        module = tmp / "pam_forcepw.so"
        if result.returncode != 0 or not module.exists():
            raise RuntimeError(f"building pam_forcepw.so failed (rc={result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")
        yield str(module.resolve())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- PAM service files ------------------------------------------------------------------------

def standard_stack(account_line=None, password_line=None):
    """An sshd-like stack on the machine's common-* files, our module after each common part."""
    lines = ["@include common-auth", "@include common-account"]
    if account_line:
        lines.append(account_line)
    lines.append("@include common-session")
    lines.append("@include common-password")
    if password_line:
        lines.append(password_line)
    return lines


def auth_account_stack(account_line=None):
    """What a PAM-authenticating program (python-pam, pamtester) needs: auth + account."""
    lines = ["@include common-auth", "@include common-account"]
    if account_line:
        lines.append(account_line)
    return lines


def service_name(suffix=None, prefix=PAM_SERVICE_PREFIX):
    return f"{prefix}-{suffix or secrets.token_hex(4)}"


def _pam_file_text(lines):
    return "\n".join([f"# {_owner_tag()} - written by forcepw tests/fixtures.py, removed after",
                      *lines]) + "\n"


@contextlib.contextmanager
def pam_service(name_suffix, lines, pam_d=PAM_D, prefix=PAM_SERVICE_PREFIX):
    """Writes <pam_d>/<prefix>-<suffix> (prefix forcepw-test or sshd-forcepw-test); yields the
    service name; removes the file afterwards."""
    name = name_suffix if name_suffix.startswith((PAM_SERVICE_PREFIX, SSHD_SERVICE_PREFIX)) \
        else service_name(name_suffix, prefix)
    path = Path(pam_d) / name
    if path.exists():
        raise FileExistsError(path)
    path.write_text(_pam_file_text(lines))
    try:
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def private_pam_d(account_line, password_line):
    """A temp copy of /etc/pam.d whose common-account and common-password end with our module.

    Only for bind-mounting over /etc/pam.d inside a private mount namespace (see sshd(...,
    private_pam_d=...)): the machine's own files are never changed. Appending is right for both:
    common-account and common-password end with `required pam_permit.so` after the success jump,
    so a line appended runs after pam_unix succeeded.
    """
    tmp = _make_temp_dir("pamd")
    try:
        copy = tmp / "pam.d"
        shutil.copytree(PAM_D, copy, symlinks=True)
        for name, line in (("common-account", account_line), ("common-password", password_line)):
            # An installed forcepw (pam-auth-update profile) may already be in the machine's
            # files: drop its lines so the stack holds exactly our module, once.
            kept = [l for l in (copy / name).read_text().splitlines() if "pam_forcepw" not in l]
            (copy / name).write_text("\n".join(
                kept + ["# added by forcepw tests (private mount namespace only)", line]) + "\n")
        yield copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def with_private_pam_d(pam_d, argv):
    """argv run in a private mount namespace where `pam_d` (see private_pam_d()) is mounted over
    /etc/pam.d: real su, chpasswd, pamtester see our module in the shared stacks; nothing else
    on the machine does."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$1" /etc/pam.d && shift && exec "$@"', "sh", str(pam_d), *argv]


# --- sshd -------------------------------------------------------------------------------------

class Sshd:
    def __init__(self, port, service, tmp, log_path, proc):
        self.port = port
        self.service = service  # PAM service name == basename of the symlink sshd runs as
        self.tmp = tmp
        self.log_path = str(log_path)
        self.proc = proc

    def log(self):
        return _read_text(self.log_path)


def _ensure_privsep_dir():
    """sshd needs /run/sshd (its privilege separation chroot) at every connection. It is made
    when missing and deliberately left in place: sshd.service makes the same directory, and
    removing it would break any other sshd (another test session's) started meanwhile."""
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


@contextlib.contextmanager
def sshd(pam_lines, extra_config=(), private_pam_d=None):
    """A private sshd on a free loopback port, with its own host key and config (no system
    Include), run as `<tmp>/sshd-forcepw-test-<suffix>` so that its PAM service is
    /etc/pam.d/sshd-forcepw-test-<suffix>, which holds `pam_lines`.

    private_pam_d: a directory (see private_pam_d()) bind-mounted over /etc/pam.d in a private
    mount namespace that only this sshd and its children (sessions, passwd) see; the service file
    is then written into that directory instead of the real /etc/pam.d.
    """
    suffix = secrets.token_hex(4)
    name = f"{SSHD_SERVICE_PREFIX}-{suffix}"
    tmp = _make_temp_dir("sshd")
    proc = None
    try:
        host_key = tmp / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True, capture_output=True, timeout=30)
        port = free_port()
        config = tmp / "sshd_config"
        # sshd takes the first value of a keyword: extra_config comes first to override.
        config.write_text("\n".join([
            *extra_config,
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {tmp / 'sshd.pid'}",
            "UsePAM yes",
            "KbdInteractiveAuthentication yes",
            "PasswordAuthentication yes",
            "PubkeyAuthentication yes",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PermitRootLogin no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
        ]) + "\n")
        program = tmp / name
        program.symlink_to(SSHD)
        argv = [str(program), "-D", "-e", "-f", str(config)]
        pam_dir = Path(private_pam_d) if private_pam_d else PAM_D
        if private_pam_d:
            argv = with_private_pam_d(pam_dir, argv)
        log_path = tmp / "sshd.stderr"
        _ensure_privsep_dir()
        with pam_service(name, pam_lines, pam_d=pam_dir):
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            running = Sshd(port, name, tmp, log_path, proc)
            try:
                _wait_until(lambda: _tcp_port_answers(port), STARTUP_TIMEOUT, "sshd", proc,
                            log_path)
                yield running
            finally:
                _stop_process(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the ssh client ---------------------------------------------------------------------------

PROMPT_CURRENT = r"Current password:\s*"
PROMPT_NEW = r"New password:\s*"
PROMPT_RETYPE = r"Retype new password:\s*"
SHELL_READY = r"\S+@\S+:\S*[$#] "  # bash's default prompt


class SshSession:
    """The real ssh client under pexpect; `transcript` is everything the user saw."""

    def __init__(self, child, buffer):
        self.child = child
        self._buffer = buffer

    @property
    def transcript(self):
        return self._buffer.getvalue()

    def expect(self, patterns, timeout=EXPECT_TIMEOUT):
        try:
            return self.child.expect(patterns, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise AssertionError(f"expected {patterns!r}, got {type(exc).__name__}; "
                                 f"transcript:\n{self.transcript}") from None

    def sendline(self, text):
        self.child.sendline(text)

    def answer_password(self, password):
        """Answers the login password prompt (keyboard-interactive or password method)."""
        self.expect([r"[Pp]assword: ?"])
        self.sendline(password)

    def change_password(self, old, new, ask_current=None):
        """Drives the forced change: (Current password:) New password: Retype new password:.
        ask_current None accepts either; True/False asserts whether the old password is asked."""
        index = self.expect([PROMPT_CURRENT, PROMPT_NEW])
        if ask_current is not None:
            assert (index == 0) == ask_current, self.transcript
        if index == 0:
            self.sendline(old)
            self.expect([PROMPT_NEW])
        self.sendline(new)
        self.expect([PROMPT_RETYPE])
        self.sendline(new)

    def expect_shell(self, timeout=EXPECT_TIMEOUT):
        """Proves a working shell: the shell must expand $((6*7))."""
        self.sendline(SHELL_PROBE)
        self.expect([SHELL_PROBE_ANSWER], timeout=timeout)

    def expect_plain_shell(self, timeout=EXPECT_TIMEOUT):
        """A shell with no password-change conversation before it."""
        self.sendline(SHELL_PROBE)
        index = self.expect([SHELL_PROBE_ANSWER, PROMPT_CURRENT, PROMPT_NEW,
                             r"(?i)password has expired", r"(?i)change your password"],
                            timeout=timeout)
        assert index == 0, f"asked to change the password; transcript:\n{self.transcript}"

    def outcome_of_login(self, password, attempts=4):
        """Answers every password prompt with `password` and says how the login ended:
        "refused" (ssh printed "Permission denied"), "change" (a change prompt), "shell", or
        "eof" (ssh ended without saying why)."""
        for _ in range(attempts):
            index = self.expect([r"[Pp]assword: ?", r"Permission denied", PROMPT_NEW,
                                 PROMPT_CURRENT, SHELL_READY, pexpect.EOF])
            if index == 0:
                self.sendline(password)
                continue
            return ["", "refused", "change", "change", "shell", "eof"][index]
        return "too many prompts"

    def expect_eof(self, timeout=EXPECT_TIMEOUT):
        self.expect([pexpect.EOF], timeout=timeout)
        self.child.close()
        return self.child.exitstatus

    def logout(self):
        if self.child.isalive():
            self.sendline("exit")
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                self.child.expect(pexpect.EOF, timeout=EXPECT_TIMEOUT)
        self.close()

    def close(self):
        if self.child.isalive():
            self.child.close(force=True)


def ssh_command(user, port, identity=None, tty=False, command=None, host="127.0.0.1"):
    name = getattr(user, "name", user)
    args = ["-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            "-o", "NumberOfPasswordPrompts=1"]
    if identity:
        args += ["-o", "PreferredAuthentications=publickey", "-o", "PubkeyAuthentication=yes",
                 "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-i", str(identity)]
    else:
        args += ["-o", "PreferredAuthentications=keyboard-interactive,password",
                 "-o", "PubkeyAuthentication=no"]
    if tty:
        args.append("-tt")
    args += ["-p", str(port), f"{name}@{host}"]
    if command:
        args.append(command)
    return args


@contextlib.contextmanager
def ssh_login(user, password, port, identity=None, tty=False, command=None, from_host=None):
    """Starts /usr/bin/ssh to 127.0.0.1:port (from_host: from that ClientHost to its
    server_address) under pexpect; answers the login password prompt
    when `password` is not None (keyboard-interactive, then password method); with `identity`
    logs in by that key only. Yields an SshSession; kills the client afterwards."""
    buffer = io.StringIO()
    argv = [SSH, *ssh_command(user, port, identity, tty, command,
                              from_host.server_address if from_host else "127.0.0.1")]
    if from_host:
        argv = from_host.run_argv(argv)
    child = pexpect.spawn(argv[0], argv[1:],
                          encoding="utf-8", codec_errors="replace", timeout=EXPECT_TIMEOUT,
                          env={"PATH": "/usr/bin:/bin", "TERM": "dumb", "HOME": "/root",
                               "LANG": "C"},
                          dimensions=(24, 200))
    child.logfile_read = buffer
    session = SshSession(child, buffer)
    try:
        if password is not None:
            session.answer_password(password)
        yield session
    finally:
        session.close()


# --- another host: a network namespace ---------------------------------------------------------

NETNS_PREFIX = "fpwt"
# Addresses only on the veth pair between this machine and its own test namespace (TEST-NET-1,
# 192.0.2.0/24, is dropped by this sandbox).
TEST_NET = "10.213.77"


class ClientHost:
    """A network namespace joined to this machine by a veth pair: a remote client for sshd."""

    def __init__(self, name, address, server_address):
        self.name = name
        self.address = address  # the client's address, as sshd sees it (PAM_RHOST)
        self.server_address = server_address  # this machine's end of the link

    def run_argv(self, argv):
        return ["ip", "netns", "exec", self.name, *argv]


@contextlib.contextmanager
def client_host():
    """A test host in its own network namespace (pyroute2), removed afterwards. sshd must listen
    on its server_address too (sshd(..., extra_config=[f"ListenAddress {host.server_address}"]))."""
    from pyroute2 import IPRoute, NetNS, netns
    name = f"{NETNS_PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"
    veth = f"fpwt{secrets.token_hex(3)}"
    subnet = TEST_NET
    netns.create(name)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=veth, kind="veth", peer=veth + "p")
            index = ipr.link_lookup(ifname=veth)[0]
            ipr.addr("add", index=index, address=f"{subnet}.1", prefixlen=24)
            ipr.link("set", index=index, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=veth + "p")[0], net_ns_fd=name)
        with NetNS(name) as ns:
            index = ns.link_lookup(ifname=veth + "p")[0]
            ns.addr("add", index=index, address=f"{subnet}.2", prefixlen=24)
            ns.link("set", index=index, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        yield ClientHost(name, f"{subnet}.2", f"{subnet}.1")
    finally:
        netns.remove(name)  # takes the veth pair with it
        with IPRoute() as ipr:
            for _ in range(50):
                if not ipr.link_lookup(ifname=veth):
                    break
                time.sleep(0.1)


# --- sweeping what a crashed earlier run left -------------------------------------------------

def sweep_stale():
    """Removes fpwt* users, forcepw-test PAM files and sshd-forcepw-test processes whose owning
    test process is dead. Things owned by a live process (a concurrent run) are left alone."""
    removed = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        # An sshd started by sshd() names its temp dir in its command line (the listener keeps
        # "-f <tmp>/sshd_config" even after retitling itself). Connection processes retitle
        # themselves "sshd-forcepw-test-x: user [priv]" without the dir: they are never touched
        # here (they end with their client).
        try:
            cmdline = Path(path).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        match = re.search(r"(/\S*/forcepw-e2e-sshd-[^/\s]+)/" + re.escape(SSHD_SERVICE_PREFIX),
                          cmdline)
        if not match:
            continue
        owner = _owner_pid(_read_text(Path(match.group(1)) / "owner"))
        if owner is not None and not _pid_alive(owner):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(path.split("/")[2]), signal.SIGKILL)
                removed.append(f"sshd pid {path.split('/')[2]}")
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        owner = _owner_pid(_read_text(path / "owner"))
        if owner is not None and not _pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"temp dir {path}")
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(USER_PREFIX):
            owner = _owner_pid(entry.pw_gecos)
            if owner is not None and not _pid_alive(owner):
                _remove_user(entry.pw_name)
                removed.append(f"user {entry.pw_name}")
    for path in Path("/run/netns").glob(f"{NETNS_PREFIX}-*"):
        owner = int(path.name.split("-")[1]) if path.name.split("-")[1].isdigit() else None
        if owner is not None and not _pid_alive(owner):
            subprocess.run(["ip", "netns", "delete", path.name], capture_output=True, timeout=30)
            removed.append(f"network namespace {path.name}")
    for path in PAM_D.glob(f"*{PAM_SERVICE_PREFIX}*"):
        owner = _owner_pid(_read_text(path))
        if owner is not None and not _pid_alive(owner):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(f"PAM file {path}")
    return removed
