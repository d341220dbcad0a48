"""The one decision: must this login attempt change the password now?"""

from dataclasses import dataclass, field

# PAM services that are not a person logging in: background jobs (field case C03), privilege
# changes inside a session that is already open (C04), and system helpers. A flagged user's cron
# jobs keep running; the flag waits for their next real login.
DEFAULT_EXEMPT_SERVICES = frozenset({
    "cron", "atd", "systemd-user", "sudo", "sudo-i", "runuser", "runuser-l", "polkit-1",
})
# su into a flagged account by root is maintenance, not the user logging in (C05).
SU_SERVICES = frozenset({"su", "su-l"})

# Services through which root sets someone else's password: an admin reset, not the user's own
# change, so the flag stays (case C09). sshd and login also run as root, but they change the
# password during the user's own login.
ADMIN_RESET_SERVICES = frozenset({"passwd", "chpasswd", "newusers"})

DEFAULT_MESSAGE = "An administrator requires you to change your password now."


@dataclass(frozen=True)
class Policy:
    exempt_services: frozenset = field(default=DEFAULT_EXEMPT_SERVICES)
    root_su_exempt: bool = True
    admin_reset_clears: bool = False

    def must_change_password(self, service, caller_uid, days_until_change_allowed):
        """Asked only for a flagged user."""
        if service in self.exempt_services:
            return False
        if days_until_change_allowed > 0:
            # pam_unix refuses the change before the minimum password age ("You must wait
            # longer"): forcing it would refuse every login until then (case C07).
            return False
        if self.root_su_exempt and service in SU_SERVICES and caller_uid == 0:
            return False
        return True


    def is_users_own_change(self, service, caller_uid, user_uid):
        """Does this completed password change clear the flag?"""
        if caller_uid == user_uid:
            return True  # the user ran passwd (also what sshd runs for a key login with a TTY)
        return self.admin_reset_clears or not (caller_uid == 0 and service in ADMIN_RESET_SERVICES)


def login_message(reason):
    """What a flagged user is told at login, before the password change starts.

    sshd shows it in a terminal session and in keyboard-interactive prompts; for a key login
    running a command without a terminal, sshd 9.2 shows no PAM message at all, only its own
    "Password change required but no TTY available" (case C01)."""
    text = DEFAULT_MESSAGE
    if reason:
        text += f"\nReason: {reason}"
    return text
