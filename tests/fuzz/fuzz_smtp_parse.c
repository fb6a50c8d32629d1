/*
 * fuzz_smtp_parse.c - libFuzzer driver of the SMTP pre-auth parser, the
 * backend reply reader and the EHLO keyword collector
 * (proxy/smtp_parse.c).
 *
 * Input: byte 0 seeds the chunking, byte 1 picks the limits and the policy,
 * the rest is what a client (and, read again, a backend) sends. The bytes
 * are parsed twice by each reader: once whole, once in chunks of random
 * sizes. The command driver acts like a session (expect_line after AUTH,
 * reset after STARTTLS, ...). Every call must keep the invariants of
 * smtp_parse.h, and both runs must produce the same events, since an event
 * may depend on the bytes only, never on how they arrived (BDAT chunks
 * skipped across calls included).
 */
#define _GNU_SOURCE /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) \
    do { \
        if (!(x)) \
            __builtin_trap(); \
    } while (0)

struct run {
    uint64_t hash;   /* FNV-1a over the events */
    size_t events;
    size_t pos;      /* where the run stopped */
};

static void
hash_bytes(struct run *r, const void *p, size_t n)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++) {
        r->hash ^= s[i];
        r->hash *= 1099511628211ULL;
    }
}

/* A small PRNG for the chunk sizes, so that a seed byte replays a run. */
static uint32_t
next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static const size_t limits[4] = {0, 40, 6, 1};

static void
check_in_arena(const struct smtp_parser *p, const char *a, size_t n)
{
    CHECK(a != NULL);
    CHECK(a >= p->arena && a + n < p->arena + sizeof(p->arena));
    CHECK(a[n] == '\0');
}

/* An argument: inside the arena, "" when absent, a piece of the raw line. */
static void
check_arg(const struct smtp_parser *p, const char *a, size_t n, int present)
{
    check_in_arena(p, a, n);
    CHECK(n <= p->max_line);
    if (!present)
        CHECK(n == 0);
    else
        CHECK(n == 0 || memmem(p->raw, p->rawlen, a, n) != NULL);
}

static void
check_event(struct smtp_parser *p, enum smtp_status st, struct run *r)
{
    r->events++;
    hash_bytes(r, &st, sizeof(st));
    switch (st) {
    case SMTP_OK:
    case SMTP_INVALID:
        CHECK(p->rawlen >= 2 && p->rawlen <= p->max_line + 2);
        check_in_arena(p, p->raw, p->rawlen);
        CHECK(p->raw[p->rawlen - 2] == '\r' && p->raw[p->rawlen - 1] == '\n');
        hash_bytes(r, p->raw, p->rawlen);
        hash_bytes(r, &p->cmd, sizeof(p->cmd));
        if (st == SMTP_INVALID) {
            CHECK(p->error != NULL && p->nargs == 0);
            CHECK(p->arglen == 0 && p->arg2len == 0);
            hash_bytes(r, p->error, strlen(p->error));
            break;
        }
        CHECK(p->error == NULL);
        CHECK(p->nargs >= 0 && p->nargs <= 2);
        check_arg(p, p->arg, p->arglen, p->nargs >= 1);
        check_arg(p, p->arg2, p->arg2len, p->nargs >= 2);
        switch (p->cmd) {
        case SMTP_CMD_STARTTLS: case SMTP_CMD_DATA: case SMTP_CMD_RSET: case SMTP_CMD_QUIT:
            CHECK(p->nargs == 0);
            break;
        case SMTP_CMD_EHLO: case SMTP_CMD_HELO: case SMTP_CMD_VRFY: case SMTP_CMD_EXPN:
        case SMTP_CMD_XCLIENT:
            CHECK(p->nargs == 1 && p->arglen > 0);
            CHECK(p->arg[0] != ' ' && p->arg[p->arglen - 1] != ' ');
            break;
        case SMTP_CMD_AUTH:
            CHECK(p->nargs >= 1 && p->arglen > 0 && p->arglen <= SMTP_MECH_MAX);
            CHECK(p->nargs == 1 || p->arg2len > 0);
            break;
        case SMTP_CMD_MAIL: case SMTP_CMD_RCPT:
            CHECK(p->nargs >= 1);
            CHECK(p->cmd == SMTP_CMD_MAIL || p->arglen > 0);
            CHECK(p->nargs == 1 || p->arg2len > 0);
            break;
        case SMTP_CMD_BDAT:
            CHECK(p->nargs >= 1 && p->arglen > 0);
            CHECK(p->chunk_last == (p->nargs == 2));
            hash_bytes(r, &p->chunk_size, sizeof(p->chunk_size));
            break;
        case SMTP_CMD_NOOP: case SMTP_CMD_HELP:
            CHECK(p->nargs <= 1);
            break;
        case SMTP_CMD_SASL_LINE:
            CHECK(p->nargs == 1 && p->rawlen == p->arglen + 2);
            break;
        default:
            CHECK(0);
        }
        hash_bytes(r, &p->nargs, sizeof(p->nargs));
        hash_bytes(r, p->arg, p->arglen + 1);
        hash_bytes(r, p->arg2, p->arg2len + 1);
        break;
    case SMTP_ERROR:
        CHECK(p->error != NULL);
        hash_bytes(r, p->error, strlen(p->error));
        break;
    default:
        break;
    }
}

static void
run_parser(const uint8_t *in, size_t len, uint8_t seed, uint8_t mode, int chunked,
           struct run *r)
{
    static struct smtp_parser parser;
    struct smtp_parser *p = &parser;
    uint32_t rnd = 0x9e3779b9u ^ seed;
    size_t pos = 0, consumed, chunk_end = 0;
    int sasl_lines = 0, invalids = 0;

    memset(r, 0, sizeof(*r));
    r->hash = 1469598103934665603ULL;
    smtp_parser_init(p, limits[mode & 3]);

    while (pos < len) {
        enum smtp_status st;
        size_t avail;

        if (pos >= chunk_end) {
            chunk_end = chunked ? pos + 1 + next_rand(&rnd) % (1 + (seed & 31)) : len;
            if (chunk_end > len)
                chunk_end = len;
        }
        avail = chunk_end - pos;
        st = smtp_parse(p, (const char *)in + pos, avail, &consumed);
        CHECK(consumed <= avail);
        pos += consumed;
        if (st == SMTP_AGAIN) {
            CHECK(consumed == avail);
            continue;
        }
        check_event(p, st, r);
        if (st == SMTP_ERROR) {
            size_t again;

            CHECK(smtp_parse(p, (const char *)in + pos, len - pos, &again) == SMTP_ERROR);
            CHECK(again == 0);
            if (!(mode & 8))
                break;
            /* Go on after a reset, to reach more states. */
            smtp_parser_reset(p);
            pos++;
            continue;
        }
        /* OK and INVALID consume the line up to its LF. */
        CHECK(consumed >= 1 && in[pos - 1] == '\n');

        if (st == SMTP_INVALID && (mode & 16) && ++invalids % 3 == 0)
            smtp_parser_reset(p);
        if (st != SMTP_OK)
            continue;
        if (p->cmd == SMTP_CMD_STARTTLS)
            smtp_parser_reset(p);
        if (p->cmd == SMTP_CMD_AUTH)
            sasl_lines = (p->arglen == 5 && memcmp(p->arg, "LOGIN", 5) == 0)
                             ? 3 - p->nargs : 2 - p->nargs;
        else if (p->cmd == SMTP_CMD_SASL_LINE)
            sasl_lines--;
        else if (p->cmd == SMTP_CMD_NOOP && (mode & 4))
            sasl_lines = 1;
        if (sasl_lines > 0)
            smtp_parser_expect_line(p);
    }
    r->pos = pos;
}

static void
run_reply(const uint8_t *in, size_t len, uint8_t seed, uint8_t mode, int chunked,
          struct run *r)
{
    static struct smtp_reply reply;
    struct smtp_reply *p = &reply;
    struct smtp_ehlo e;
    uint32_t rnd = 0x7f4a7c15u ^ seed;
    size_t pos = 0, consumed, chunk_end = 0;

    memset(r, 0, sizeof(*r));
    r->hash = 1469598103934665603ULL;
    smtp_reply_init(p, limits[mode & 3]);
    smtp_ehlo_init(&e);

    while (pos < len) {
        enum smtp_status st;
        size_t avail;

        if (pos >= chunk_end) {
            chunk_end = chunked ? pos + 1 + next_rand(&rnd) % (1 + (seed & 31)) : len;
            if (chunk_end > len)
                chunk_end = len;
        }
        avail = chunk_end - pos;
        st = smtp_reply_parse(p, (const char *)in + pos, avail, &consumed);
        CHECK(consumed <= avail);
        pos += consumed;
        if (st == SMTP_AGAIN) {
            CHECK(consumed == avail);
            continue;
        }
        r->events++;
        hash_bytes(r, &st, sizeof(st));
        if (st == SMTP_ERROR) {
            size_t again;

            CHECK(p->error != NULL);
            CHECK(smtp_reply_parse(p, (const char *)in + pos, len - pos, &again) == SMTP_ERROR);
            CHECK(again == 0);
            break;
        }
        CHECK(consumed >= 1 && in[pos - 1] == '\n');
        if (st == SMTP_INVALID) {
            CHECK(p->error != NULL);
            hash_bytes(r, p->error, strlen(p->error));
            continue;
        }
        CHECK(p->error == NULL);
        CHECK(p->code >= 200 && p->code <= 559);
        CHECK(p->lineno >= 0 && p->lineno < SMTP_REPLY_MAX_LINES);
        CHECK(p->text >= p->line && p->text + p->textlen < p->line + sizeof(p->line));
        CHECK(p->text[p->textlen] == '\0');
        CHECK(memchr(p->text, '\0', p->textlen) == NULL);
        CHECK(p->textlen + 3 <= p->max_line);
        smtp_ehlo_add(&e, p);
        hash_bytes(r, &p->code, sizeof(p->code));
        hash_bytes(r, &p->last, sizeof(p->last));
        hash_bytes(r, &p->lineno, sizeof(p->lineno));
        hash_bytes(r, p->text, p->textlen + 1);
    }
    CHECK((e.auth == 0 && e.xclient == 0) || (e.ext & (SMTP_EXT_AUTH | SMTP_EXT_XCLIENT)));
    hash_bytes(r, &e, sizeof(e));
    r->pos = pos;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run whole, chunks;

    if (size < 2)
        return 0;
    run_parser(data + 2, size - 2, data[0], data[1], 0, &whole);
    run_parser(data + 2, size - 2, data[0], data[1], 1, &chunks);
    CHECK(whole.events == chunks.events);
    CHECK(whole.hash == chunks.hash);
    CHECK(whole.pos == chunks.pos);

    run_reply(data + 2, size - 2, data[0], data[1], 0, &whole);
    run_reply(data + 2, size - 2, data[0], data[1], 1, &chunks);
    CHECK(whole.events == chunks.events);
    CHECK(whole.hash == chunks.hash);
    CHECK(whole.pos == chunks.pos);
    return 0;
}
