/*
 * The PAM module's copy of the forcepwd wire format (daemon/forcepw/protocol.py is the
 * definition). Only the two PAM operations are spoken here. tests/vectors.json holds the exact
 * bytes both sides must agree on; tests/test_pam_protocol_vectors.py checks this file against it.
 *
 * No PAM dependency, no allocation, no global state: the vector tests load protocol.c alone.
 */
#ifndef FORCEPW_PROTOCOL_H
#define FORCEPW_PROTOCOL_H

#include <stddef.h>
#include <sys/types.h>

/* The root-only socket (protocol.ROOT_SOCKET_PATH): no other user can crowd its queue. */
#define FORCEPW_SOCKET_PATH "/run/forcepw/forcepwd-root.sock"
#define FORCEPW_TIMEOUT_MS 2000           /* the module's whole budget: connect + send + reply */
#define FORCEPW_MAX_PAM_FIELD_BYTES 1024  /* protocol.MAX_PAM_FIELD_BYTES */
#define FORCEPW_MAX_PAM_REPLY_BYTES 4096  /* protocol.MAX_PAM_REPLY_BYTES */
/* Worst case request: five fields of 1024 bytes each escaped as \u00XX (6 bytes) + the rest. */
#define FORCEPW_MAX_REQUEST_BYTES (5 * 6 * FORCEPW_MAX_PAM_FIELD_BYTES + 256)

#define FORCEPW_OP_CHECK_LOGIN "check_login"
#define FORCEPW_OP_PASSWORD_CHANGED "password_changed"

#define FORCEPW_VERDICT_ALLOW "allow"
#define FORCEPW_VERDICT_CHANGE_REQUIRED "change_required"
#define FORCEPW_VERDICT_CLEARED "cleared"

/*
 * Writes the request line for op (one of the FORCEPW_OP_* above) into out[0..out_size): the exact
 * bytes of Python's json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", keys in
 * the order op, user, service, rhost, tty, ruser, caller_uid. NULL strings are sent as "".
 * rhost, tty and ruser longer than FORCEPW_MAX_PAM_FIELD_BYTES are cut to that length.
 * Returns the number of bytes written (no NUL terminator is counted or required), or -1 if op is
 * unknown, user or service is longer than FORCEPW_MAX_PAM_FIELD_BYTES, or the line does not fit.
 */
ssize_t forcepw_encode_request(char *out, size_t out_size, const char *op, const char *user,
                               const char *service, const char *rhost, const char *tty,
                               const char *ruser, int caller_uid);

/*
 * Reads a reply (at most FORCEPW_MAX_PAM_REPLY_BYTES, trailing newline optional): one JSON object
 * whose top-level "verdict" is a string. Copies the decoded top-level "verdict" and "message"
 * strings (UTF-8, NUL-terminated; message is "" when absent) into the caller's buffers.
 * Returns 0, or -1 for anything else: error replies, garbage, truncation, nesting deeper than a
 * small limit, a string containing \u0000, or output that does not fit the buffers.
 */
int forcepw_decode_reply(const char *reply, size_t reply_len, char *verdict, size_t verdict_size,
                         char *message, size_t message_size);

#endif
