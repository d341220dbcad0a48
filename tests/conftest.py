"""pytest fixtures for the end-to-end tests; all creation logic lives in tests/fixtures.py."""

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures  # noqa: E402

E2E_MARK = "e2e"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{E2E_MARK}: end-to-end test with real users, sshd, PAM")
    # `timeout`, CI cancellation and `kill` send SIGTERM, which by default ends Python without
    # running any finally block: users and PAM files would stay. Make it unwind like Ctrl-C.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _require_root():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests create users and PAM services: run as root")


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_leftovers():
    """Removes what a crashed earlier run left (only things whose owning process is dead)."""
    if os.geteuid() == 0:
        fixtures.sweep_stale()
    yield
    if os.geteuid() == 0:
        fixtures.sweep_stale()


# Logs of the processes a test started (forcepwd, sshd) are attached to its report on failure.

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for title, source in getattr(item, "_forcepw_logs", []):
            text = source()
            if text:
                report.sections.append((f"{title} ({report.when})", text[-20000:]))


def _attach_log(request, title, source):
    request.node.__dict__.setdefault("_forcepw_logs", []).append((title, source))


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def make_user():
    """Factory: make_user() -> a fresh fpwt* user, removed after the test."""
    _require_root()
    with contextlib.ExitStack() as stack:
        yield lambda **kw: stack.enter_context(fixtures.test_user(**kw))


@pytest.fixture
def test_user(make_user):
    return make_user()


@pytest.fixture
def daemon_factory(request):
    """Factory: daemon_factory(extra_args=(), env=None, config_text="") -> a forcepwd from the
    tree on its own temp socket, state dir and settings file, stopped after the test."""
    _require_root()
    with contextlib.ExitStack() as stack:
        def start(extra_args=(), env=None, config_text=""):
            running = stack.enter_context(fixtures.daemon(extra_args, env, config_text))
            _attach_log(request, "forcepwd stderr", running.log)
            return running
        yield start


@pytest.fixture
def daemon(daemon_factory):
    """forcepwd from the tree on a temp socket and state dir."""
    return daemon_factory()


@pytest.fixture(scope="session")
def pam_module():
    """Absolute path of pam_forcepw.so built from the tree (once per session)."""
    _require_root()
    with fixtures.pam_module() as path:
        yield path


@pytest.fixture
def module_lines(daemon, pam_module):
    """(account_line, password_line) as `forcepwctl pam-lines` prints them for this daemon."""
    return daemon.pam_lines(pam_module)


@pytest.fixture
def make_pam_service():
    """Factory: make_pam_service(lines) -> service name of /etc/pam.d/forcepw-test-<random>."""
    _require_root()
    with contextlib.ExitStack() as stack:
        yield lambda lines, suffix=None: stack.enter_context(
            fixtures.pam_service(fixtures.service_name(suffix), lines))


@pytest.fixture
def scratch_dir():
    """A temp dir removed after the test (keys, ...)."""
    with fixtures.temp_dir() as path:
        yield path


@pytest.fixture
def forcepw_pam_d(module_lines):
    """A private copy of /etc/pam.d with our module in common-account and common-password, for
    make_sshd(..., private_pam_d=...). Request it before make_sshd: it must outlive the sshd."""
    with fixtures.private_pam_d(*module_lines) as path:
        yield path


@pytest.fixture
def make_sshd(request):
    """Factory: make_sshd(pam_lines, extra_config=(), private_pam_d=None) -> running Sshd."""
    _require_root()
    with contextlib.ExitStack() as stack:
        def start(pam_lines, **kw):
            running = stack.enter_context(fixtures.sshd(pam_lines, **kw))
            _attach_log(request, f"sshd {running.service} stderr", running.log)
            return running
        yield start


@pytest.fixture
def plain_sshd(make_sshd):
    """A private sshd whose PAM stack is the machine's sshd-like stack without our module."""
    return make_sshd(fixtures.standard_stack())


@pytest.fixture
def forcepw_sshd(make_sshd, module_lines):
    """A private sshd whose PAM stack has our module after common-account and common-password,
    with the lines printed by `forcepwctl pam-lines`."""
    return make_sshd(fixtures.standard_stack(*module_lines))


@pytest.fixture
def client_host():
    """Another host: a network namespace with its own address, joined by a veth pair."""
    _require_root()
    with fixtures.client_host() as host:
        yield host
