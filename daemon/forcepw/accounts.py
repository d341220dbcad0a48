"""What the system knows about an account, through NSS (local files, LDAP, SSSD alike: case C08)."""

import pwd
import time
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # spwd: deprecated in 3.11, still there
    import spwd


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    # From the shadow entry; None when NSS has no shadow entry for the user (LDAP, SSSD).
    has_usable_password: bool | None
    days_until_change_allowed: int | None


class NoSuchUser(Exception):
    pass


def lookup(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NoSuchUser(name) from None
    try:
        shadow = spwd.getspnam(name)
    except (KeyError, OSError):
        # No shadow entry (LDAP, SSSD) ends in KeyError, or in an OSError when the NSS module
        # left errno set (seen: EAGAIN from a thread): either way nothing is known.
        return Account(name, entry.pw_uid, None, None)
    return Account(name, entry.pw_uid, _usable(shadow.sp_pwdp), _days_until_change_allowed(shadow))


def _usable(hashed):
    # "", "*", "!..." (locked) and "!*" cannot be typed as a current password (case C02).
    return bool(hashed) and not hashed.startswith(("!", "*"))


def _days_until_change_allowed(shadow):
    """Days before the minimum password age lets the user change it (case C07); 0 = now."""
    if shadow.sp_min <= 0 or shadow.sp_lstchg <= 0:
        return 0
    today = int(time.time() // 86400)
    return max(0, shadow.sp_lstchg + shadow.sp_min - today)
