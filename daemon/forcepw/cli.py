"""forcepwctl: the admin CLI, a thin client of forcepwd's socket with whmapi1's grammar.

    forcepwctl [--socket PATH] [--output=yaml|json|jsonpretty|xml] FUNCTION [key=value ...]

Values (and keys) are URI-decoded, as whmapi1 does: users_json=%7B%22alice%22%3A1%7D and
users_json='{"alice":1}' are the same call. Exit status 0 when metadata.result is 1.
"""

import argparse
import json
import os
import sys
from urllib.parse import unquote

from . import client, protocol, render

EXIT_OK = 0
EXIT_RESULT_FAILED = 1  # the daemon answered with metadata.result 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

PAM_MODULE = "pam_forcepw.so"
# The account line maps PAM_NEW_AUTHTOK_REQD to "done" so sshd/login/su start the change; any
# other failure of the module is ignored (fail open). The password line sits after pam_unix, so
# it runs only when the new password was written.
PAM_ACCOUNT_CONTROL = "[success=ok new_authtok_reqd=done default=ignore]"
PAM_PASSWORD_CONTROL = "[success=ok default=ignore]"

ALIASES_HELP = """\
shortcuts:
  flag USER... [--reason TEXT]   forcepasswordchange with USER=1 for each
  unflag USER...                 forcepasswordchange with USER=0 for each
  list                           list_forced_password_changes
  status [USER]                  get_forced_password_change (default: yourself)
  history [USER]                 forcepw_history
  pam-lines [--socket PATH] [--module PATH]
                                 the PAM lines for a custom service file
"""


class UsageError(Exception):
    pass


def functions_help():
    lines = ["functions (whmapi1 grammar: FUNCTION key=value ...):"]
    for name, spec in protocol.FUNCTIONS.items():
        lines.append(f"  {name}: {spec.summary}")
        for param, text in spec.params:
            lines.append(f"      {param}=...  {text}")
        if spec.is_list:
            lines.append("      api.filter.*, api.sort.*, api.chunk.*, api.columns.*  as whmapi1")
    return "\n".join(lines) + "\n\n" + ALIASES_HELP


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="forcepwctl", description="Admin CLI of forcepw (whmapi1 grammar).",
        epilog=functions_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", default=os.environ.get("FORCEPW_SOCKET"),
                        help="forcepwd's socket (default $FORCEPW_SOCKET, else "
                             f"{protocol.ROOT_SOCKET_PATH} for root and "
                             f"{protocol.SOCKET_PATH} for other users)")
    parser.add_argument("--output", default="yaml", choices=render.FORMATS,
                        help="output format, as whmapi1 (default %(default)s)")
    parser.add_argument("function", help="a function or a shortcut, see below")
    parser.add_argument("params", nargs=argparse.REMAINDER, help="key=value ...")
    return parser.parse_args(argv)


def parse_params(params):
    """whmapi1's key=value list -> dict of URI-decoded strings."""
    args = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        key = unquote(key)
        if key in args:
            raise UsageError(f"parameter {key!r} given twice")
        args[key] = unquote(value)
    return args


def expand_shortcut(name, params):
    """A shortcut -> (function, args); anything else is taken as a function with key=value."""
    if name in ("flag", "unflag"):
        parser = argparse.ArgumentParser(prog=f"forcepwctl {name}")
        parser.add_argument("users", nargs="+")
        if name == "flag":
            parser.add_argument("--reason", default="")
        parsed = _parse_or_usage(parser, params)
        value = 1 if name == "flag" else 0
        users_json = json.dumps({user: value for user in parsed.users})
        args = {"users_json": users_json}
        if getattr(parsed, "reason", ""):
            args["reason"] = parsed.reason
        return "forcepasswordchange", args
    if name == "list":
        return "list_forced_password_changes", parse_params(params)
    if name in ("status", "history"):
        parser = argparse.ArgumentParser(prog=f"forcepwctl {name}")
        parser.add_argument("user", nargs="?")
        parsed = _parse_or_usage(parser, params)
        function = "get_forced_password_change" if name == "status" else "forcepw_history"
        return function, ({"user": parsed.user} if parsed.user else {})
    return name, parse_params(params)


def _parse_or_usage(parser, params):
    try:
        return parser.parse_args(params)
    except SystemExit as exc:
        raise UsageError(f"bad arguments for {parser.prog}") from exc


def default_socket():
    return protocol.ROOT_SOCKET_PATH if os.geteuid() == 0 else protocol.SOCKET_PATH


def pam_lines(socket_path, module):
    """The module's lines; socket_path is the one it should ask (default: the root-only one)."""
    if any(ch.isspace() for ch in socket_path + module):
        raise UsageError("PAM module arguments cannot contain white space")
    arg = "" if socket_path == protocol.ROOT_SOCKET_PATH else f" socket={socket_path}"
    return (f"account {PAM_ACCOUNT_CONTROL} {module}{arg}\n"
            f"password {PAM_PASSWORD_CONTROL} {module}{arg}\n")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.function == "pam-lines":
            parser = argparse.ArgumentParser(prog="forcepwctl pam-lines")
            parser.add_argument("--socket", default=args.socket or protocol.ROOT_SOCKET_PATH)
            parser.add_argument("--module", default=PAM_MODULE)
            parsed = _parse_or_usage(parser, args.params)
            sys.stdout.write(pam_lines(parsed.socket, parsed.module))
            return EXIT_OK
        function, call_args = expand_shortcut(args.function, args.params)
    except UsageError as exc:
        print(f"forcepwctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        reply = client.ask(args.socket or default_socket(),
                           protocol.call_request(function, call_args))
    except client.Unreachable as exc:
        print(f"forcepwctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not reply["ok"]:
        error = reply.get("error", {})
        print(f"forcepwctl: forcepwd refused: {error.get('kind')}: {error.get('message')}",
              file=sys.stderr)
        return EXIT_RESULT_FAILED
    result = reply["result"]
    sys.stdout.write(render.render(result, args.output))
    return EXIT_OK if result.get("metadata", {}).get("result") == 1 else EXIT_RESULT_FAILED


if __name__ == "__main__":
    sys.exit(main())
