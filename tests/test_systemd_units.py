"""The systemd units, tested under a real systemd: a Debian 12 container booted with systemd-nspawn.

The container's root is a debootstrap tree cached in /var/cache/forcepw-test (keyed by what it
contains), mounted with --volatile=overlay so every run starts from the same pristine tree and
leaves it untouched. The checkout is bind-mounted read-only at /src; the units are installed as
shipped, and /usr/local/sbin/forcepwd (their ExecStart) runs the daemon from /src.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("FORCEPW_TEST_CACHE", "/var/cache/forcepw-test"))
SUITE = "bookworm"
# The daemon's dependencies come from Debian here, so the container needs no network.
# procps: /bin/kill for ExecReload, there on every Debian system but not in minbase. The second
# line is what install.sh would apt-get, so that install.sh runs inside without apt.
INCLUDE = ",".join([
    "systemd,systemd-sysv,dbus,procps,python3,python3-yaml,python3-sdnotify,python3-systemd",
    "ca-certificates,gcc,make,libc6-dev,libpam0g-dev,libpam-runtime,python3-venv,python3-dev,"
    "libsystemd-dev,pkg-config,pamtester,passwd",
])
# Commands inside get this environment, not the test runner's (pyenv, pip settings, ...).
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8", "HOME": "/root"}
# pip inside the container trusts what the host trusts (the host may reach PyPI through a proxy
# with its own CA).
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
SOCKET = "/run/forcepw/forcepwd.sock"
ROOT_SOCKET = "/run/forcepw/forcepwd-root.sock"
UNIT_DIR = "/usr/local/lib/systemd/system"

LAUNCHER = """#!/usr/bin/python3
import sys
sys.path.insert(0, "/src/daemon")
from forcepw.daemon import main
sys.exit(main())
"""

# One request over the socket, from inside the container; prints the reply line.
ASK = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(b'{"op":"call","function":"forcepasswordchange","args":{"users_json":"{}"}}\\n')
reply = b""
while not reply.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
sys.stdout.write(reply.decode())
"""


def _missing_tools():
    if os.geteuid() != 0:
        return "booting a container needs root"
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "nsenter")
               if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install debootstrap systemd-container)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (needed for --volatile=overlay)"
    return None


def cached_rootfs():
    """The debootstrap tree for INCLUDE, built once and then reused (about a minute to build)."""
    key = hashlib.sha256(f"{SUITE} minbase {INCLUDE}".encode()).hexdigest()[:16]
    rootfs = CACHE / f"rootfs-{key}"
    if rootfs.is_dir():
        return rootfs
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / f"building-{key}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(building)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"debootstrap failed:\n{result.stdout[-5000:]}")
        # Renamed only when complete: an interrupted build is never taken for a cached tree.
        building.rename(rootfs)
        for stale in CACHE.glob("rootfs-*"):  # trees for an older INCLUDE are never used again
            if stale != rootfs:
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return rootfs


class Container:
    """A booted container: run(...) executes a command inside it with nsenter."""

    def __init__(self, rootfs, log_path):
        self.name = f"forcepwtest-{uuid.uuid4().hex[:8]}"
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet",
             f"--machine={self.name}", "--directory", str(rootfs), "--volatile=overlay",
             f"--bind-ro={REPO}:/src", *_host_ca_bind(), "--boot", "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.pid1 = None

    def find_pid1(self, timeout=30):
        """The container's init: the descendant of systemd-nspawn that is PID 1 in its namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.nspawn.returncode}:\n"
                                     + self.console())
            for pid in _descendants(self.nspawn.pid):
                if _ns_pid(pid) == 1:
                    self.pid1 = pid
                    return pid
            time.sleep(0.1)
        raise AssertionError("the container's init did not appear:\n" + self.console())

    def run(self, *argv, check=True, timeout=60, input=None, env=None):
        result = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", "--", *argv],
                                input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, timeout=timeout, env=dict(CLEAN_ENV, **(env or {})))
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited with {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def sh(self, script, **kwargs):
        return self.run("/bin/sh", "-ec", script, **kwargs)

    def show(self, unit, *props):
        out = self.run("systemctl", "show", unit, "--property=" + ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def console(self):
        self.log.flush()
        return Path(self.log_path).read_text(errors="replace")[-5000:]

    def destroy(self):
        """Power off, and kill whatever did not go within the grace time; never leaves it running."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
            try:
                self.nspawn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                if self.pid1 is not None:
                    _kill(self.pid1)  # PID 1 of a namespace: the kernel kills all of it
                _kill(self.nspawn.pid)
                self.nspawn.wait(timeout=10)
        if self.pid1 is not None and Path(f"/proc/{self.pid1}").exists() \
                and _ns_pid(self.pid1) == 1:
            _kill(self.pid1)
        self.log.close()


def _host_ca_bind():
    return [f"--bind-ro={HOST_CA}:/etc/forcepw-test-host-ca.crt"] if Path(HOST_CA).exists() else []


def _children(pid):
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _ns_pid(pid):
    """The pid of a process in its own, innermost pid namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def booted_container(tmp_path_factory):
    """A fresh container (pristine tree, nothing kept), booted to running; always torn down."""
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    rootfs = cached_rootfs()
    box = Container(rootfs, tmp_path_factory.mktemp("nspawn") / "console.log")
    try:
        box.find_pid1()
        # "degraded" is normal in a container (units for hardware that is not there).
        deadline = time.monotonic() + 120
        while True:
            state = box.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the container did not boot (state {state!r}):\n"
                                     + box.console())
            time.sleep(0.5)
        yield box
    finally:
        box.destroy()


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    """A booted container with the units installed as shipped and forcepwd running from /src."""
    with booted_container(tmp_path_factory) as box:
        box.run("install", "-d", "-m", "0755", UNIT_DIR)
        box.run("install", "-m", "0644", "/src/systemd/forcepwd.socket",
                "/src/systemd/forcepwd-root.socket", "/src/systemd/forcepwd.service", UNIT_DIR)
        box.run("/bin/sh", "-c", "cat >/usr/local/sbin/forcepwd && chmod 0755 /usr/local/sbin/forcepwd",
                input=LAUNCHER)
        box.run("systemctl", "daemon-reload")
        yield box


def test_units_load_without_warnings_in_systemd_252(container):
    out = container.run("systemd-analyze", "verify", f"{UNIT_DIR}/forcepwd.socket",
                        f"{UNIT_DIR}/forcepwd-root.socket", f"{UNIT_DIR}/forcepwd.service",
                        check=False)
    lines = [line for line in (out.stdout + out.stderr).splitlines()
             # systemd's syscall table knows newer syscalls than Debian's libseccomp: harmless
             if "Failed to parse system call" not in line]
    assert lines == []


def test_enabling_the_service_also_enables_the_socket(container):
    container.run("systemctl", "enable", "forcepwd.service")
    try:
        for unit in ("forcepwd.socket", "forcepwd-root.socket"):
            assert container.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
        wants = container.run("systemctl", "show", "multi-user.target", "-p", "Wants").stdout
        assert "forcepwd.service" in wants
    finally:
        container.run("systemctl", "disable", "forcepwd.service", "forcepwd.socket",
                      "forcepwd-root.socket")


def test_first_connection_starts_the_service_which_becomes_ready_and_stops_cleanly(container):
    container.run("systemctl", "enable", "--now", "forcepwd.socket", "forcepwd-root.socket")
    try:
        assert container.show("forcepwd.socket", "ActiveState")["ActiveState"] == "active"
        assert container.show("forcepwd.service", "ActiveState")["ActiveState"] == "inactive"
        # The socket belongs to systemd: mode 0666 in a 0755 directory, before any daemon runs.
        modes = container.run("stat", "-c", "%a %F", SOCKET, ROOT_SOCKET,
                              "/run/forcepw").stdout.split("\n")
        assert modes[:3] == ["666 socket", "600 socket", "755 directory"]

        reply = container.run("python3", "-c", ASK, SOCKET, timeout=60).stdout
        assert '"ok":true' in reply.replace(" ", "")

        service = container.show("forcepwd.service", "ActiveState", "SubState", "Type",
                                 "WatchdogUSec", "MainPID")
        assert (service["ActiveState"], service["SubState"]) == ("active", "running")
        assert service["Type"] == "notify"
        assert service["WatchdogUSec"] == "30s"
        assert container.run("stat", "-c", "%a", "/var/lib/forcepw").stdout.strip() == "700"
        assert container.run("stat", "-c", "%a", "/var/lib/forcepw/forcepw.db").stdout.strip() \
            in ("600", "400")

        container.run("systemctl", "stop", "forcepwd.service")
        stopped = container.show("forcepwd.service", "ActiveState", "Result", "ExecMainStatus")
        assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
        # The socket stays, so the next login starts the daemon again.
        assert container.show("forcepwd.socket", "ActiveState")["ActiveState"] == "active"

        journal = container.run("journalctl", "--no-pager", "-o", "cat", "-u",
                                "forcepwd.service").stdout
        assert "ready on 2 systemd socket(s)" in journal  # both, whichever woke it
        assert "stopping" in journal
    finally:
        container.run("systemctl", "disable", "--now", "forcepwd.socket", "forcepwd-root.socket",
                      "forcepwd.service")
    assert container.run("test", "-e", SOCKET, check=False).returncode != 0, \
        "a stopped socket unit leaves no socket file behind (RemoveOnStop=yes)"


def test_the_daemon_pings_the_watchdog(container):
    # A 2 s watchdog instead of 30 s: a daemon that did not ping would be killed and restarted.
    container.run("mkdir", "-p", "/run/systemd/system/forcepwd.service.d")
    container.run("/bin/sh", "-c",
                  "printf '[Service]\\nWatchdogSec=2\\n' >/run/systemd/system/forcepwd.service.d/wd.conf")
    container.run("systemctl", "daemon-reload")
    try:
        container.run("systemctl", "start", "forcepwd.service", timeout=60)
        time.sleep(6)
        state = container.show("forcepwd.service", "ActiveState", "NRestarts", "WatchdogUSec")
        assert state == {"ActiveState": "active", "NRestarts": "0", "WatchdogUSec": "2s"}
    finally:
        container.run("systemctl", "stop", "forcepwd.service", "forcepwd.socket",
                      "forcepwd-root.socket")
        container.run("rm", "-rf", "/run/systemd/system/forcepwd.service.d")
        container.run("systemctl", "daemon-reload")


def test_sighup_reloads_without_stopping(container):
    container.run("systemctl", "start", "forcepwd.socket", "forcepwd-root.socket",
                  "forcepwd.service", timeout=60)
    try:
        before = container.show("forcepwd.service", "MainPID")["MainPID"]
        container.run("systemctl", "reload", "forcepwd.service")
        time.sleep(1)
        after = container.show("forcepwd.service", "MainPID", "ActiveState")
        assert after == {"MainPID": before, "ActiveState": "active"}
    finally:
        container.run("systemctl", "stop", "forcepwd.service", "forcepwd.socket",
                      "forcepwd-root.socket")


def _pam_common(box):
    return {name: box.run("cat", f"/etc/pam.d/common-{name}").stdout
            for name in ("account", "password")}


def test_install_sh_on_systemd_enables_everything_and_uninstall_sh_undoes_it(tmp_path_factory):
    with booted_container(tmp_path_factory) as box:
        # install.sh builds in its own tree (pip, make): give it a writable copy of the checkout.
        box.sh("mkdir /root/forcepw && cd /src && "
               "tar --exclude=./.venv --exclude=./.git --exclude='*.so' -cf - . "
               "| tar -C /root/forcepw -xf -")
        pam_before = _pam_common(box)
        pip_env = {"PIP_CERT": "/etc/forcepw-test-host-ca.crt"} if _host_ca_bind() else {}

        installed = box.run("/root/forcepw/install.sh", env=pip_env, timeout=900)
        assert "enabled and (re)started forcepwd.socket and forcepwd.service" in installed.stdout
        for unit in ("forcepwd.socket", "forcepwd-root.socket", "forcepwd.service"):
            assert box.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
            assert box.run("systemctl", "is-active", unit).stdout.strip() == "active"
        pam_installed = _pam_common(box)
        for name, control in (("account", "[success=ok new_authtok_reqd=done default=ignore]"),
                              ("password", "[success=ok default=ignore]")):
            lines = [line.split() for line in pam_installed[name].splitlines()
                     if line and not line.startswith("#")]
            assert lines[-1] == [name, *control.split(), "pam_forcepw.so"]
            assert [name, "required", "pam_permit.so"] in lines[:-1]

        # The whole chain on a real stack: forcepwctl -> forcepwd -> pam_forcepw in common-account.
        box.sh("useradd -m alice && echo 'alice:Old-Passw0rd!x' | chpasswd")
        box.run("forcepwctl", "flag", "alice")
        flagged = box.run("pamtester", "login", "alice", "acct_mgmt", check=False)
        assert flagged.returncode != 0
        assert "new one required" in flagged.stderr
        box.run("forcepwctl", "unflag", "alice")
        assert box.run("pamtester", "login", "alice", "acct_mgmt", check=False).returncode == 0

        again = box.run("/root/forcepw/install.sh", env=pip_env, timeout=900)
        assert again.returncode == 0
        assert _pam_common(box) == pam_installed

        box.run("/root/forcepw/uninstall.sh")
        assert _pam_common(box) == pam_before
        for unit in ("forcepwd.socket", "forcepwd-root.socket", "forcepwd.service"):
            assert box.run("systemctl", "is-active", unit, check=False).stdout.strip() == "inactive"
        for path in ("/opt/forcepw", "/usr/local/sbin/forcepwd", "/usr/local/bin/forcepwctl",
                     f"{UNIT_DIR}/forcepwd.service", f"{UNIT_DIR}/forcepwd-root.socket",
                     "/usr/share/pam-configs/forcepw", "/run/forcepw/forcepwd.sock",
                     "/run/forcepw/forcepwd-root.sock"):
            assert box.run("test", "-e", path, check=False).returncode != 0, path
        assert box.run("sh", "-c", "ls /lib/*/security/pam_forcepw.so", check=False).returncode != 0
        assert box.run("test", "-f", "/var/lib/forcepw/forcepw.db").returncode == 0, \
            "the state is kept without --purge"
