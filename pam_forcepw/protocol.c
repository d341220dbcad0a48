/*
 * The PAM module's copy of the forcepwd wire format; see protocol.h and daemon/forcepw/protocol.py.
 *
 * The decoder is a small recursive-descent reader rather than a substring search: the reply may
 * carry other members (an "extra" object with its own "verdict", a message quoting "verdict"), and
 * only the top-level members count. Recursion is bounded by FORCEPW_MAX_DEPTH so a hostile or
 * broken peer cannot exhaust the stack of the host process (sshd, login, su).
 */
#include "protocol.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define FORCEPW_MAX_DEPTH 32

/* Bounded output buffer, always NUL-terminated. Once something does not fit, "unfit" sticks and
 * later writes are dropped, so parsing can continue to find syntax errors. buf NULL = discard. */
struct text {
    char *buf;
    size_t size;
    size_t len;
    int unfit;
};

static void text_init(struct text *t, char *buf, size_t size)
{
    t->buf = buf;
    t->size = size;
    t->len = 0;
    t->unfit = (buf != NULL && size == 0);
    if (buf != NULL && size > 0)
        buf[0] = '\0';
}

static void text_put(struct text *t, const char *bytes, size_t n)
{
    if (t->buf == NULL || t->unfit)
        return;
    if (n > t->size - 1 - t->len) {
        t->unfit = 1;
        return;
    }
    memcpy(t->buf + t->len, bytes, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* The first n bytes of s as a JSON string, exactly as Python's json.dumps(..., ensure_ascii=False)
 * writes it. */
static void put_json_string(struct text *t, const char *s, size_t n)
{
    text_put(t, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; p < (const unsigned char *)s + n &&
                                                           *p != '\0'; p++) {
        char esc[8];
        switch (*p) {
        case '"': text_put(t, "\\\"", 2); break;
        case '\\': text_put(t, "\\\\", 2); break;
        case '\n': text_put(t, "\\n", 2); break;
        case '\r': text_put(t, "\\r", 2); break;
        case '\t': text_put(t, "\\t", 2); break;
        case '\b': text_put(t, "\\b", 2); break;
        case '\f': text_put(t, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                text_put(t, esc, 6);
            } else {
                /* 0x7f and UTF-8 go raw; invalid UTF-8 is the daemon's to refuse. */
                text_put(t, (const char *)p, 1);
            }
        }
    }
    text_put(t, "\"", 1);
}

ssize_t forcepw_encode_request(char *out, size_t out_size, const char *op, const char *user,
                               const char *service, const char *rhost, const char *tty,
                               const char *ruser, int caller_uid)
{
    static const char *const names[] = {"user", "service", "rhost", "tty", "ruser"};
    const char *values[] = {user, service, rhost, tty, ruser};
    struct text t;
    char uid[16];

    if (out == NULL || op == NULL ||
        (strcmp(op, FORCEPW_OP_CHECK_LOGIN) != 0 && strcmp(op, FORCEPW_OP_PASSWORD_CHANGED) != 0))
        return -1;
    text_init(&t, out, out_size);
    text_puts(&t, "{\"op\":");
    put_json_string(&t, op, strlen(op));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *value = values[i] != NULL ? values[i] : "";
        size_t len = strnlen(value, FORCEPW_MAX_PAM_FIELD_BYTES + 1);
        /* user and service decide the verdict: never cut them. rhost, tty and ruser are only
         * reported: a long one is cut (the daemon replaces a cut UTF-8 sequence) rather than
         * letting whoever set it skip the check. */
        if (len > FORCEPW_MAX_PAM_FIELD_BYTES) {
            if (i < 2)
                return -1;
            len = FORCEPW_MAX_PAM_FIELD_BYTES;
        }
        text_puts(&t, ",\"");
        text_puts(&t, names[i]);
        text_puts(&t, "\":");
        put_json_string(&t, value, len);
    }
    snprintf(uid, sizeof uid, "%d", caller_uid);
    text_puts(&t, ",\"caller_uid\":");
    text_puts(&t, uid);
    text_puts(&t, "}\n");
    return t.unfit ? -1 : (ssize_t)t.len;
}

/* ---- decoding ---------------------------------------------------------------------------- */

struct parser {
    const unsigned char *pos;
    const unsigned char *end;
};

static void skip_ws(struct parser *ps)
{
    while (ps->pos < ps->end &&
           (*ps->pos == ' ' || *ps->pos == '\t' || *ps->pos == '\n' || *ps->pos == '\r'))
        ps->pos++;
}

static int expect(struct parser *ps, unsigned char c)
{
    skip_ws(ps);
    if (ps->pos >= ps->end || *ps->pos != c)
        return -1;
    ps->pos++;
    return 0;
}

static int read_hex4(struct parser *ps, uint32_t *value)
{
    *value = 0;
    if (ps->end - ps->pos < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = *ps->pos++;
        int digit = (c >= '0' && c <= '9') ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (digit < 0)
            return -1;
        *value = *value * 16 + (uint32_t)digit;
    }
    return 0;
}

static void put_utf8(struct text *t, uint32_t cp)
{
    char b[4];
    size_t n;

    if (cp < 0x80) {
        b[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    }
    text_put(t, b, n);
}

/* A JSON string starting at the opening quote, decoded into t. A decoded NUL would silently cut
 * a C string short, so it makes t unfit (the value is refused; a key simply does not match). */
static int parse_string(struct parser *ps, struct text *t)
{
    if (expect(ps, '"') < 0)
        return -1;
    while (ps->pos < ps->end) {
        unsigned char c = *ps->pos++;
        uint32_t cp, low;

        if (c == '"')
            return 0;
        if (c < 0x20)
            return -1; /* JSON forbids raw control characters in strings */
        if (c != '\\') {
            text_put(t, (const char *)&c, 1);
            continue;
        }
        if (ps->pos >= ps->end)
            return -1;
        switch (c = *ps->pos++) {
        case '"': case '\\': case '/': text_put(t, (const char *)&c, 1); break;
        case 'b': text_put(t, "\b", 1); break;
        case 'f': text_put(t, "\f", 1); break;
        case 'n': text_put(t, "\n", 1); break;
        case 'r': text_put(t, "\r", 1); break;
        case 't': text_put(t, "\t", 1); break;
        case 'u':
            if (read_hex4(ps, &cp) < 0)
                return -1;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* A high surrogate must be followed by an escaped low one. */
                if (ps->end - ps->pos < 6 || ps->pos[0] != '\\' || ps->pos[1] != 'u')
                    return -1;
                ps->pos += 2;
                if (read_hex4(ps, &low) < 0 || low < 0xdc00 || low > 0xdfff)
                    return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1; /* a lone low surrogate has no UTF-8 form */
            }
            if (cp == 0)
                t->unfit = 1;
            else
                put_utf8(t, cp);
            break;
        default:
            return -1;
        }
    }
    return -1; /* truncated */
}

static int skip_digits(struct parser *ps)
{
    const unsigned char *start = ps->pos;
    while (ps->pos < ps->end && *ps->pos >= '0' && *ps->pos <= '9')
        ps->pos++;
    return ps->pos > start ? 0 : -1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(struct parser *ps)
{
    if (ps->pos < ps->end && *ps->pos == '-')
        ps->pos++;
    if (ps->pos < ps->end && *ps->pos == '0')
        ps->pos++;
    else if (skip_digits(ps) < 0)
        return -1;
    if (ps->pos < ps->end && *ps->pos == '.') {
        ps->pos++;
        if (skip_digits(ps) < 0)
            return -1;
    }
    if (ps->pos < ps->end && (*ps->pos == 'e' || *ps->pos == 'E')) {
        ps->pos++;
        if (ps->pos < ps->end && (*ps->pos == '+' || *ps->pos == '-'))
            ps->pos++;
        if (skip_digits(ps) < 0)
            return -1;
    }
    return 0;
}

static int skip_literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->pos) < n || memcmp(ps->pos, word, n) != 0)
        return -1;
    ps->pos += n;
    return 0;
}

/* Any JSON value, nested no deeper than FORCEPW_MAX_DEPTH. */
static int skip_value(struct parser *ps, int depth)
{
    struct text none;

    text_init(&none, NULL, 0);
    if (depth > FORCEPW_MAX_DEPTH)
        return -1;
    skip_ws(ps);
    if (ps->pos >= ps->end)
        return -1;
    switch (*ps->pos) {
    case '"':
        return parse_string(ps, &none);
    case 't': return skip_literal(ps, "true");
    case 'f': return skip_literal(ps, "false");
    case 'n': return skip_literal(ps, "null");
    case '{':
    case '[': {
        unsigned char close = *ps->pos == '{' ? '}' : ']';
        ps->pos++;
        if (expect(ps, close) == 0)
            return 0;
        do {
            if (close == '}' && (parse_string(ps, &none) < 0 || expect(ps, ':') < 0))
                return -1;
            if (skip_value(ps, depth + 1) < 0)
                return -1;
        } while (expect(ps, ',') == 0);
        return expect(ps, close);
    }
    default:
        return skip_number(ps);
    }
}

static int parse_reply(const char *reply, size_t reply_len, char *verdict, size_t verdict_size,
                       char *message, size_t message_size)
{
    struct parser ps;
    struct text verdict_text, message_text, key;
    char key_buf[8]; /* fits "verdict" and "message"; longer keys are just not ours */
    int have_verdict = 0;

    ps.pos = (const unsigned char *)reply;
    ps.end = ps.pos + reply_len;
    text_init(&verdict_text, verdict, verdict_size);
    text_init(&message_text, message, message_size);
    if (expect(&ps, '{') < 0)
        return -1;
    if (expect(&ps, '}') == 0)
        return -1; /* empty object: no verdict */
    do {
        text_init(&key, key_buf, sizeof key_buf);
        if (parse_string(&ps, &key) < 0 || expect(&ps, ':') < 0)
            return -1;
        skip_ws(&ps);
        if (!key.unfit && strcmp(key_buf, "verdict") == 0) {
            /* Like Python's dict, the last duplicate wins. */
            text_init(&verdict_text, verdict, verdict_size);
            if (parse_string(&ps, &verdict_text) < 0 || verdict_text.unfit)
                return -1;
            have_verdict = 1;
        } else if (!key.unfit && strcmp(key_buf, "message") == 0) {
            text_init(&message_text, message, message_size);
            if (parse_string(&ps, &message_text) < 0 || message_text.unfit)
                return -1;
        } else if (skip_value(&ps, 2) < 0) {
            return -1;
        }
    } while (expect(&ps, ',') == 0);
    if (expect(&ps, '}') < 0)
        return -1;
    skip_ws(&ps); /* the newline, and anything json.loads would also accept */
    if (ps.pos != ps.end || !have_verdict)
        return -1;
    return 0;
}

int forcepw_decode_reply(const char *reply, size_t reply_len, char *verdict, size_t verdict_size,
                         char *message, size_t message_size)
{
    if (reply == NULL || reply_len > FORCEPW_MAX_PAM_REPLY_BYTES || verdict == NULL ||
        verdict_size == 0 || message == NULL || message_size == 0)
        return -1;
    if (parse_reply(reply, reply_len, verdict, verdict_size, message, message_size) == 0)
        return 0;
    /* Never hand half a verdict to a caller that ignores the return value. */
    verdict[0] = '\0';
    message[0] = '\0';
    return -1;
}
