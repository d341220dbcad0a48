#!/usr/bin/env python3
"""What pam_forcepw adds to a login's account phase, as a ratio to a baseline in the same run.

Runs pam_start / pam_acct_mgmt / pam_end in this process through libpam (as a login program
would), N times each, interleaved in rounds so machine noise hits every variant alike:
  baseline   account required pam_permit.so
  unflagged  the same + pam_forcepw.so, daemon running, user not flagged (the common case)
  flagged    the same, user flagged (the daemon also writes a history event)
  down       the same, daemon stopped (fail open: connect refused)
Needs root and a tree with daemon/ and pam_forcepw/. Usage: sudo bench/login_overhead.py [N]
"""

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "daemon"))

from forcepw import client, protocol  # noqa: E402

PAM = ctypes.CDLL("libpam.so.0")


class PamConv(ctypes.Structure):
    _fields_ = [("conv", ctypes.c_void_p), ("appdata_ptr", ctypes.c_void_p)]


CONV_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p)


@CONV_FUNC
def _no_conversation(n, messages, responses, data):
    return 19  # PAM_CONV_ERR: nobody answers; the module's PAM_TEXT_INFO is dropped


def acct_mgmt(service, user):
    handle = ctypes.c_void_p()
    conv = PamConv(ctypes.cast(_no_conversation, ctypes.c_void_p), None)
    rc = PAM.pam_start(service.encode(), user.encode(), ctypes.byref(conv), ctypes.byref(handle))
    assert rc == 0, rc
    rc = PAM.pam_acct_mgmt(handle, 0)
    PAM.pam_end(handle, rc)
    return rc


@contextlib.contextmanager
def pam_service(lines):
    name = f"forcepw-test-bench-{secrets.token_hex(4)}"
    path = Path("/etc/pam.d") / name
    path.write_text("\n".join(lines) + "\n")
    try:
        yield name
    finally:
        path.unlink()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    tmp = Path(tempfile.mkdtemp(prefix="forcepw-bench-"))
    daemon = None
    try:
        subprocess.run(["make", "-s", "-C", str(REPO / "pam_forcepw"), f"OUT={tmp}",
                        "pam_forcepw.so"], check=True)
        sock = tmp / "forcepwd.sock"
        env = {**os.environ, "PYTHONPATH": str(REPO / "daemon")}
        daemon = subprocess.Popen([sys.executable, "-m", "forcepw.daemon", "--socket",
                                   str(tmp / "public.sock"), "--root-socket", str(sock),
                                   "--state-dir", str(tmp / "state"),
                                   "--config", str(tmp / "none.conf")], env=env,
                                  stderr=subprocess.DEVNULL)
        while not sock.exists():
            time.sleep(0.05)
        module_line = f"account [success=ok new_authtok_reqd=done default=ignore] " \
                      f"{tmp}/pam_forcepw.so socket={sock}"
        down_line = module_line.replace(str(sock), str(tmp / "nobody-listens.sock"))
        # "daemon" (uid 1) stands in for any account: acct_mgmt with pam_permit needs no password.
        flag = protocol.call_request("forcepasswordchange", {
            "users_json": '{"daemon":1}', "allow_no_password": "1"})
        assert client.ask(str(sock), flag)["result"]["metadata"]["result"] == 1
        with pam_service(["account required pam_permit.so"]) as baseline, \
                pam_service(["account required pam_permit.so", module_line]) as with_module, \
                pam_service(["account required pam_permit.so", down_line]) as daemon_down:
            variants = {"baseline": (baseline, "root", 0),
                        "unflagged": (with_module, "root", 0),
                        "flagged": (with_module, "daemon", 12),
                        "down": (daemon_down, "daemon", 0)}
            totals = dict.fromkeys(variants, 0.0)
            for _ in range(rounds):
                for name, (service, user, expected) in variants.items():
                    start = time.perf_counter()
                    rc = acct_mgmt(service, user)
                    totals[name] += time.perf_counter() - start
                    assert rc == expected, (name, rc)
        base = totals["baseline"] / rounds
        print(f"pam_acct_mgmt, {rounds} rounds, mean per call")
        for name, total in totals.items():
            mean = total / rounds
            print(f"  {name:10s} {mean * 1e6:9.1f} us   x{mean / base:6.2f} of baseline   "
                  f"+{(mean - base) * 1e6:8.1f} us")
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
