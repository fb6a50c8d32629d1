/*
 * fuzz_pop3_parse.c - libFuzzer driver of the POP3 pre-auth parser and the
 * backend reply classifier (proxy/pop3_parse.c).
 *
 * Input: byte 0 seeds the chunking, byte 1 picks the limits and the policy,
 * the rest is what a client (and, read again, a backend) sends. The bytes
 * are parsed twice by each reader: once whole, once in chunks of random
 * sizes. The command driver acts like a session (expect_line after AUTH,
 * reset after STLS, ...). Every call must keep the invariants of
 * pop3_parse.h, and both runs must produce the same events, since an event
 * may depend on the bytes only, never on how they arrived.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/pop3_parse.h"

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

/* An argument: inside the arena, NUL-terminated, "" when absent. */
static void
check_arg(const struct pop3_parser *p, const char *a, size_t n, int present)
{
    CHECK(a != NULL);
    CHECK(a >= p->arena && a + n < p->arena + sizeof(p->arena));
    CHECK(a[n] == '\0');
    CHECK(n <= p->max_line);
    if (!present)
        CHECK(n == 0);
}

/* A word of USER, AUTH or APOP: no SP, no control character, not empty. */
static void
check_word(const char *a, size_t n)
{
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)a[i] > 0x20 && (unsigned char)a[i] != 0x7f);
}

static void
check_event(struct pop3_parser *p, enum pop3_status st, struct run *r)
{
    r->events++;
    hash_bytes(r, &st, sizeof(st));
    switch (st) {
    case POP3_OK:
        CHECK(p->error == NULL);
        CHECK(p->nargs >= 0 && p->nargs <= 2);
        check_arg(p, p->arg, p->arglen, p->nargs >= 1);
        check_arg(p, p->arg2, p->arg2len, p->nargs >= 2);
        switch (p->cmd) {
        case POP3_CMD_CAPA: case POP3_CMD_STLS: case POP3_CMD_NOOP: case POP3_CMD_QUIT:
            CHECK(p->nargs == 0);
            break;
        case POP3_CMD_USER:
            CHECK(p->nargs == 1);
            check_word(p->arg, p->arglen);
            break;
        case POP3_CMD_PASS:
            CHECK(p->nargs == 1 && p->arglen > 0);
            CHECK(memchr(p->arg, '\0', p->arglen) == NULL);
            break;
        case POP3_CMD_AUTH:
            if (p->nargs >= 1)
                check_word(p->arg, p->arglen);
            if (p->nargs == 2)
                check_word(p->arg2, p->arg2len);
            break;
        case POP3_CMD_APOP:
            CHECK(p->nargs == 2);
            check_word(p->arg, p->arglen);
            check_word(p->arg2, p->arg2len);
            break;
        case POP3_CMD_SASL_LINE:
            CHECK(p->nargs == 1);
            break;
        default:
            CHECK(0);
        }
        hash_bytes(r, &p->cmd, sizeof(p->cmd));
        hash_bytes(r, &p->nargs, sizeof(p->nargs));
        hash_bytes(r, p->arg, p->arglen + 1);
        hash_bytes(r, p->arg2, p->arg2len + 1);
        break;
    case POP3_INVALID:
    case POP3_ERROR:
        CHECK(p->error != NULL);
        CHECK(p->nargs == 0 || st == POP3_ERROR);
        hash_bytes(r, &p->cmd, sizeof(p->cmd));
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
    static struct pop3_parser parser;
    struct pop3_parser *p = &parser;
    uint32_t rnd = 0x9e3779b9u ^ seed;
    size_t pos = 0, consumed, chunk_end = 0;
    int sasl_lines = 0, invalids = 0;

    memset(r, 0, sizeof(*r));
    r->hash = 1469598103934665603ULL;
    pop3_parser_init(p, limits[mode & 3]);

    while (pos < len) {
        enum pop3_status st;
        size_t avail;

        if (pos >= chunk_end) {
            chunk_end = chunked ? pos + 1 + next_rand(&rnd) % (1 + (seed & 31)) : len;
            if (chunk_end > len)
                chunk_end = len;
        }
        avail = chunk_end - pos;
        st = pop3_parse(p, (const char *)in + pos, avail, &consumed);
        CHECK(consumed <= avail);
        pos += consumed;
        if (st == POP3_AGAIN) {
            CHECK(consumed == avail);
            continue;
        }
        check_event(p, st, r);
        if (st == POP3_ERROR) {
            size_t again;

            CHECK(pop3_parse(p, (const char *)in + pos, len - pos, &again) == POP3_ERROR);
            CHECK(again == 0);
            if (!(mode & 8))
                break;
            /* Go on after a reset, to reach more states. */
            pop3_parser_reset(p);
            pos++;
            continue;
        }
        /* OK and INVALID consume the line up to its LF. */
        CHECK(consumed >= 1 && in[pos - 1] == '\n');

        if (st == POP3_INVALID && (mode & 16) && ++invalids % 3 == 0)
            pop3_parser_reset(p);
        if (st != POP3_OK)
            continue;
        if (p->cmd == POP3_CMD_STLS)
            pop3_parser_reset(p);
        if (p->cmd == POP3_CMD_AUTH && p->nargs >= 1)
            sasl_lines = (p->arglen == 5 && memcmp(p->arg, "LOGIN", 5) == 0)
                             ? 3 - p->nargs : 2 - p->nargs;
        else if (p->cmd == POP3_CMD_SASL_LINE)
            sasl_lines--;
        else if (p->cmd == POP3_CMD_NOOP && (mode & 4))
            sasl_lines = 1;
        if (sasl_lines > 0)
            pop3_parser_expect_line(p);
    }
    r->pos = pos;
}

static void
run_reply(const uint8_t *in, size_t len, uint8_t seed, uint8_t mode, int chunked,
          struct run *r)
{
    static struct pop3_reply reply;
    struct pop3_reply *p = &reply;
    uint32_t rnd = 0x7f4a7c15u ^ seed;
    size_t pos = 0, consumed, chunk_end = 0;

    memset(r, 0, sizeof(*r));
    r->hash = 1469598103934665603ULL;
    pop3_reply_init(p, limits[mode & 3]);

    while (pos < len) {
        enum pop3_status st;
        size_t avail;

        if (pos >= chunk_end) {
            chunk_end = chunked ? pos + 1 + next_rand(&rnd) % (1 + (seed & 31)) : len;
            if (chunk_end > len)
                chunk_end = len;
        }
        avail = chunk_end - pos;
        st = pop3_reply_parse(p, (const char *)in + pos, avail, &consumed);
        CHECK(consumed <= avail);
        pos += consumed;
        if (st == POP3_AGAIN) {
            CHECK(consumed == avail);
            continue;
        }
        r->events++;
        hash_bytes(r, &st, sizeof(st));
        if (st == POP3_ERROR) {
            size_t again;

            CHECK(p->error != NULL);
            CHECK(pop3_reply_parse(p, (const char *)in + pos, len - pos, &again) == POP3_ERROR);
            CHECK(again == 0);
            break;
        }
        CHECK(consumed >= 1 && in[pos - 1] == '\n');
        if (st == POP3_INVALID) {
            CHECK(p->error != NULL);
            hash_bytes(r, p->error, strlen(p->error));
            continue;
        }
        CHECK(p->error == NULL);
        CHECK(p->kind >= POP3_REPLY_OK && p->kind <= POP3_REPLY_LINE);
        CHECK(p->text >= p->line && p->text + p->textlen < p->line + sizeof(p->line));
        CHECK(p->text[p->textlen] == '\0');
        CHECK(memchr(p->text, '\0', p->textlen) == NULL);
        CHECK(p->textlen <= p->max_line);
        hash_bytes(r, &p->kind, sizeof(p->kind));
        hash_bytes(r, p->text, p->textlen + 1);
    }
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
