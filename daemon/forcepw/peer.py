"""Who is on the other end of a connection, from the kernel's credentials, and what they may do."""

import enum
import grp
import pwd
import socket
import struct
from dataclasses import dataclass

# Not exported by Python's socket module; values from <asm-generic/socket.h>.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
_MAX_GROUPS = 65536


class PeerRole(enum.Enum):
    ROOT = "root"  # uid 0: everything, including the PAM operations about any user
    ADMIN = "admin"  # member of the admin group: every admin function, not the PAM operations
    USER = "user"  # anyone else: questions about themself only


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple
    name: str  # the uid's user name, or the uid as text when NSS does not know it
    role: PeerRole


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def admin_gid(group_name):
    """The gid of the admin group, or None when no admin group is configured."""
    if not group_name:
        return None
    try:
        return grp.getgrnam(group_name).gr_gid
    except KeyError:
        raise ValueError(f"admin group {group_name!r} does not exist") from None


def peer_groups(sock):
    size = 256
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * size)
            return tuple(struct.unpack(f"{len(raw) // 4}I", raw))
        except OSError as exc:
            if exc.errno == 34 and size < _MAX_GROUPS:  # ERANGE: the buffer was too small
                size *= 4
                continue
            raise


def role_for(uid, gid, groups, admin_group_gid):
    if uid == 0:
        return PeerRole.ROOT
    if admin_group_gid is not None and (gid == admin_group_gid or admin_group_gid in groups):
        return PeerRole.ADMIN
    return PeerRole.USER


def identify(sock, admin_group_gid=None):
    """The credentials the kernel recorded when the peer connected (they cannot be forged)."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    groups = peer_groups(sock)
    return Peer(pid, uid, gid, groups, user_name(uid), role_for(uid, gid, groups, admin_group_gid))

