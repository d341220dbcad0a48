"""forcepwd's settings file, read at start and again on SIGHUP.

    # /etc/forcepw/forcepwd.conf
    [forcepwd]
    admin_group = wheel             # members may call the admin functions (root always may)
    exempt_services = cron atd systemd-user sudo sudo-i runuser runuser-l polkit-1
    enforce_su_by_root = no         # yes: root running su into a flagged account is forced too
    admin_reset_clears = no         # yes: root setting the password (passwd USER, chpasswd)
                                    #      clears the flag as the user's own change does

A missing file means the defaults. A file with an error is refused as a whole (at start: the
daemon does not start; on SIGHUP: the settings in force stay). An admin group that does not
exist (any more) is logged and ignored: root alone is admin until it exists.
"""

import configparser
import logging
import os
import stat
from dataclasses import dataclass

from .peer import admin_gid
from .policy import DEFAULT_EXEMPT_SERVICES, Policy

log = logging.getLogger("forcepwd")

CONFIG_PATH = "/etc/forcepw/forcepwd.conf"
SECTION = "forcepwd"
KEYS = ("admin_group", "exempt_services", "enforce_su_by_root", "admin_reset_clears")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    policy: Policy
    admin_group_gid: int | None


def load(path):
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the daemon
            raise ConfigError(f"{path}: not a regular file")
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return Settings(Policy(), None)
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = [s for s in parser.sections() if s != SECTION]
    unknown += [k for k in (parser[SECTION] if parser.has_section(SECTION) else {})
                if k not in KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown section or key: {', '.join(unknown)}")
    section = parser[SECTION] if parser.has_section(SECTION) else parser[parser.default_section]
    try:
        exempt = section.get("exempt_services")
        policy = Policy(
            exempt_services=(frozenset(exempt.replace(",", " ").split()) if exempt is not None
                             else DEFAULT_EXEMPT_SERVICES),
            root_su_exempt=not section.getboolean("enforce_su_by_root", False),
            admin_reset_clears=section.getboolean("admin_reset_clears", False))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        group_gid = admin_gid(section.get("admin_group", "").strip())
    except ValueError as exc:
        # A group removed by someone else must not stop the flags being enforced: root stays
        # the only admin until it is back.
        log.error("%s: %s; only root may call the admin functions", path, exc)
        group_gid = None
    return Settings(policy, group_gid)
