/*
 * pam_forcepw: ask forcepwd whether this login must change its password (account), and tell it
 * when the password has been changed (password). Thin in the pam_sss way: the module packs the
 * PAM items into one request, the daemon decides, and the verdict is mapped to a PAM code here.
 *
 * Every failure fails open (PAM_IGNORE + LOG_ERR): a daemon that is down, slow or confused must
 * never lock anybody out, root on the console included (docs/design.md).
 *
 *   account  [success=ok new_authtok_reqd=done default=ignore] pam_forcepw.so
 *   password [success=ok default=ignore] pam_forcepw.so   (after pam_unix)
 */
#define _GNU_SOURCE /* struct ucred */
#define PAM_SM_ACCOUNT
#define PAM_SM_PASSWORD

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "protocol.h"

#define EXPORT __attribute__((visibility("default")))
#define DEFAULT_CHANGE_MESSAGE "An administrator requires you to change your password now."

struct settings {
    const char *socket_path;
    int timeout_ms;
    int debug;
};

static void parse_args(pam_handle_t *pamh, int argc, const char **argv, struct settings *s)
{
    s->socket_path = FORCEPW_SOCKET_PATH;
    s->timeout_ms = FORCEPW_TIMEOUT_MS;
    s->debug = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "socket=", 7) == 0 && argv[i][7] != '\0') {
            s->socket_path = argv[i] + 7;
        } else if (strncmp(argv[i], "timeout_ms=", 11) == 0) {
            char *end;
            long ms = strtol(argv[i] + 11, &end, 10);
            if (end == argv[i] + 11 || *end != '\0') {
                pam_syslog(pamh, LOG_ERR, "bad option ignored: %s", argv[i]);
                continue;
            }
            /* Clamped: the design promises a login never waits more than 2 s on us. */
            s->timeout_ms = ms < 1 ? 1 : ms > FORCEPW_TIMEOUT_MS ? FORCEPW_TIMEOUT_MS : (int)ms;
        } else if (strcmp(argv[i], "debug") == 0) {
            s->debug = 1;
        } else {
            pam_syslog(pamh, LOG_ERR, "unknown option ignored: %s", argv[i]);
        }
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the shared deadline. 0 = ready, -1 = error or timeout (errno). */
static int wait_for(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        long long left = deadline - now_ms();
        int n;

        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        n = poll(&pfd, 1, (int)left);
        if (n > 0)
            return 0; /* POLLERR/POLLHUP: the next syscall reports the real error */
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

/*
 * One request, one reply, within one deadline over connect + send + receive. Returns the reply
 * length, or -1 with errno set and *step naming what failed (for the log line).
 */
static ssize_t exchange(const struct settings *s, const char *request, size_t request_len,
                        char *reply, size_t reply_size, const char **step)
{
    long long deadline = now_ms() + s->timeout_ms;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t sent = 0, got = 0;
    int fd, err;

    *step = "connect";
    if (strlen(s->socket_path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, s->socket_path);
    /* CLOEXEC: in a threaded host another thread may fork+exec while we hold the fd. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    /* EAGAIN on a Unix socket is a full listen queue (a burst of logins: the root-only socket
     * cannot be filled by other users): try again until the deadline. */
    while ((err = connect(fd, (struct sockaddr *)&addr, sizeof addr)) < 0 && errno == EAGAIN) {
        if (now_ms() + 10 >= deadline) {
            errno = ETIMEDOUT;
            goto fail;
        }
        poll(NULL, 0, 10);
    }
    if (err < 0) {
        socklen_t len = sizeof err;
        /* An interrupted connect goes on in the background, like EINPROGRESS. */
        if (errno != EINPROGRESS && errno != EINTR)
            goto fail;
        if (wait_for(fd, POLLOUT, deadline) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            goto fail;
        if (err != 0) {
            errno = err;
            goto fail;
        }
    }
    /* Only a daemon running as root may decide about logins: a socket some user managed to
     * put at this path must not be able to force (or spare) anybody. */
    *step = "check the daemon's credentials on";
    {
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
            goto fail;
        if (cred.uid != 0) {
            errno = EPERM;
            goto fail;
        }
    }
    *step = "send";
    while (sent < request_len) {
        /* MSG_NOSIGNAL: a daemon that went away must not SIGPIPE sshd or login. */
        ssize_t n = send(fd, request + sent, request_len - sent, MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            goto fail;
        else if (wait_for(fd, POLLOUT, deadline) < 0)
            goto fail;
    }
    *step = "receive";
    while (got < reply_size && memchr(reply, '\n', got) == NULL) {
        ssize_t n = recv(fd, reply + got, reply_size - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break; /* EOF: the decoder decides whether what came is a whole reply */
        else if (errno != EAGAIN && errno != EINTR)
            goto fail;
        else if (wait_for(fd, POLLIN, deadline) < 0)
            goto fail;
    }
    close(fd);
    return (ssize_t)got;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

static const char *item(pam_handle_t *pamh, int type)
{
    const void *value = NULL;
    if (pam_get_item(pamh, type, &value) != PAM_SUCCESS || value == NULL)
        return "";
    return value;
}

/*
 * Sends op about the current PAM items and reads the verdict. 0 on success; -1 after logging why
 * at LOG_ERR, in which case the caller fails open.
 */
static int ask_daemon(pam_handle_t *pamh, const struct settings *s, const char *op,
                      char *verdict, size_t verdict_size, char *message, size_t message_size)
{
    char reply[FORCEPW_MAX_PAM_REPLY_BYTES];
    const char *user = item(pamh, PAM_USER), *step;
    ssize_t request_len, reply_len;
    char *request;

    if (*user == '\0') {
        pam_syslog(pamh, LOG_ERR, "%s: no PAM user set; failing open", op);
        return -1;
    }
    request = malloc(FORCEPW_MAX_REQUEST_BYTES); /* ~30 KiB: too big for a thread's stack */
    if (request == NULL) {
        pam_syslog(pamh, LOG_ERR, "%s: out of memory; failing open", op);
        return -1;
    }
    /* getuid(), not geteuid(): under setuid su this is whoever ran su. */
    request_len = forcepw_encode_request(request, FORCEPW_MAX_REQUEST_BYTES, op, user,
                                         item(pamh, PAM_SERVICE), item(pamh, PAM_RHOST),
                                         item(pamh, PAM_TTY), item(pamh, PAM_RUSER), (int)getuid());
    if (request_len < 0) {
        pam_syslog(pamh, LOG_ERR, "%s for %s: a PAM item is longer than %d bytes; failing open",
                   op, user, FORCEPW_MAX_PAM_FIELD_BYTES);
        free(request);
        return -1;
    }
    reply_len = exchange(s, request, (size_t)request_len, reply, sizeof reply, &step);
    free(request);
    if (reply_len < 0) {
        pam_syslog(pamh, LOG_ERR, "%s for %s: %s %s: %s; failing open", op, user, step,
                   s->socket_path, strerror(errno));
        return -1;
    }
    if (forcepw_decode_reply(reply, (size_t)reply_len, verdict, verdict_size, message,
                             message_size) < 0) {
        int shown = 0; /* the first line, clipped: enough to see an error reply's kind */
        while (shown < reply_len && shown < 200 && reply[shown] != '\n')
            shown++;
        pam_syslog(pamh, LOG_ERR, "%s for %s: forcepwd sent no verdict (%.*s); failing open",
                   op, user, shown, reply);
        return -1;
    }
    if (s->debug)
        pam_syslog(pamh, LOG_DEBUG, "%s for %s: verdict %s", op, user, verdict);
    return 0;
}

/* The message comes from an admin via the daemon and goes to a terminal: neutralise control
 * characters (C0 but \n and \t, DEL, UTF-8 encoded C1) so it cannot carry escape sequences. */
static void make_printable(char *text)
{
    unsigned char *p = (unsigned char *)text;
    for (; *p != '\0'; p++) {
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
            *p = '?';
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
            p[0] = '?', p[1] = '?';
    }
}

EXPORT int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    char verdict[64], message[FORCEPW_MAX_PAM_REPLY_BYTES + 1];
    struct settings s;

    parse_args(pamh, argc, argv, &s);
    if (ask_daemon(pamh, &s, FORCEPW_OP_CHECK_LOGIN, verdict, sizeof verdict, message,
                   sizeof message) < 0)
        return PAM_IGNORE;
    /* "allow" is PAM_IGNORE, not PAM_SUCCESS: this module only ever adds a requirement; it must
     * not be able to make an account stack succeed on its own (e.g. if placed as "sufficient"). */
    if (strcmp(verdict, FORCEPW_VERDICT_ALLOW) == 0)
        return PAM_IGNORE;
    if (strcmp(verdict, FORCEPW_VERDICT_CHANGE_REQUIRED) == 0) {
        make_printable(message);
        /* PAM_SILENT asks for no messages (pam_unix keeps quiet too); the code still applies. */
        if (!(flags & PAM_SILENT))
            pam_info(pamh, "%s", message[0] != '\0' ? message : DEFAULT_CHANGE_MESSAGE);
        pam_syslog(pamh, LOG_NOTICE, "password change required for %s", item(pamh, PAM_USER));
        return PAM_NEW_AUTHTOK_REQD;
    }
    pam_syslog(pamh, LOG_ERR, "check_login: unknown verdict \"%s\"; failing open", verdict);
    return PAM_IGNORE;
}

EXPORT int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    char verdict[64], message[FORCEPW_MAX_PAM_REPLY_BYTES + 1];
    struct settings s;

    /* libpam runs the stack twice; only the second pass (after pam_unix wrote the new password,
     * since we are stacked after it) is news for the daemon. */
    if (!(flags & PAM_UPDATE_AUTHTOK))
        return PAM_IGNORE;
    parse_args(pamh, argc, argv, &s);
    /* Whatever the answer, the change has happened: never fail it. An undelivered report only
     * means the user is asked again at the next login. */
    if (ask_daemon(pamh, &s, FORCEPW_OP_PASSWORD_CHANGED, verdict, sizeof verdict, message,
                   sizeof message) < 0)
        return PAM_IGNORE;
    if (strcmp(verdict, FORCEPW_VERDICT_CLEARED) == 0)
        pam_syslog(pamh, LOG_NOTICE, "forced password change done for %s; flag cleared",
                   item(pamh, PAM_USER));
    else if (strcmp(verdict, FORCEPW_VERDICT_ALLOW) != 0)
        pam_syslog(pamh, LOG_ERR, "password_changed: unknown verdict \"%s\"", verdict);
    return PAM_IGNORE;
}

/* The other groups have nothing to do; present so that any stack line referring to us loads. */
EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}

EXPORT int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}

EXPORT int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}

EXPORT int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh, (void)flags, (void)argc, (void)argv;
    return PAM_IGNORE;
}
