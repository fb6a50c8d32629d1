/*
 * fuzz_imap_parse.c - libFuzzer driver of the IMAP pre-auth parser
 * (proxy/imap_parse.c).
 *
 * Input: byte 0 seeds the chunking, byte 1 picks the limits and the policy,
 * the rest is what a client sends. The bytes are parsed twice by a driver
 * that acts like a session (expect_line after AUTHENTICATE, reset after
 * STARTTLS, ...): once whole, once in chunks of random sizes. Every call must
 * keep the invariants of imap_parse.h, and both runs must produce the same
 * events, since an event may depend on the bytes only, never on how they
 * arrived (nginx's mail bugs lived exactly in the resume paths).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/imap_parse.h"

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

static int
tag_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+", c);
}

/* What every result must satisfy; folds the event into the run's hash. */
static void
check_event(struct imap_parser *p, enum imap_status st, struct run *r)
{
    size_t taglen = strnlen(p->tag, sizeof(p->tag));

    CHECK(taglen <= IMAP_TAG_MAX);
    for (size_t i = 0; i < taglen; i++)
        CHECK(tag_char_ok((unsigned char)p->tag[i]));
    r->events++;
    hash_bytes(r, &st, sizeof(st));

    switch (st) {
    case IMAP_OK:
        CHECK(p->nargs >= 0 && p->nargs <= IMAP_MAX_ARGS);
        switch (p->cmd) {
        case IMAP_CMD_CAPABILITY: case IMAP_CMD_NOOP: case IMAP_CMD_LOGOUT:
        case IMAP_CMD_STARTTLS: case IMAP_CMD_ID:
            CHECK(p->nargs == 0 && taglen > 0);
            break;
        case IMAP_CMD_LOGIN:
            CHECK(p->nargs == 2 && taglen > 0);
            break;
        case IMAP_CMD_AUTHENTICATE:
            CHECK((p->nargs == 1 || p->nargs == 2) && taglen > 0);
            CHECK(p->arglen[0] > 0);
            break;
        case IMAP_CMD_SASL_LINE:
            CHECK(p->nargs == 1 && taglen == 0);
            CHECK(p->arglen[0] <= p->max_line);
            break;
        default:
            CHECK(0);
        }
        hash_bytes(r, p->tag, taglen + 1);
        hash_bytes(r, &p->cmd, sizeof(p->cmd));
        for (int i = 0; i < p->nargs; i++) {
            CHECK(p->args[i] >= p->arena);
            CHECK(p->arglen[i] < sizeof(p->arena));
            CHECK(p->args[i] + p->arglen[i] < p->arena + sizeof(p->arena));
            CHECK(p->args[i][p->arglen[i]] == '\0');
            CHECK(p->arglen[i] <= p->max_line || p->arglen[i] <= p->max_literal);
            hash_bytes(r, &p->arglen[i], sizeof(p->arglen[i]));
            hash_bytes(r, p->args[i], p->arglen[i]);
        }
        break;
    case IMAP_INVALID:
    case IMAP_ERROR:
        CHECK(p->error != NULL);
        CHECK(p->nargs == 0 || st == IMAP_ERROR);
        hash_bytes(r, p->tag, taglen + 1);
        hash_bytes(r, p->error, strlen(p->error));
        break;
    default:
        break;
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

/*
 * Parses in[0..len) in chunks (chunked != 0) or whole, with a session-like
 * policy that depends on the events only.
 */
static void
run_parser(const uint8_t *in, size_t len, uint8_t seed, uint8_t mode, int chunked,
           struct run *r)
{
    static const size_t limits[4][2] = {{0, 0}, {100, 20}, {16, 4}, {1, 1}};
    static struct imap_parser parser;
    struct imap_parser *p = &parser;
    uint32_t rnd = 0x9e3779b9u ^ seed;
    size_t pos = 0, consumed, chunk_end = 0;
    int sasl_lines = 0, invalids = 0;

    memset(r, 0, sizeof(*r));
    r->hash = 1469598103934665603ULL;
    imap_parser_init(p, limits[mode & 3][0], limits[mode & 3][1]);

    while (pos < len) {
        enum imap_status st;
        size_t avail;

        if (pos >= chunk_end) {
            chunk_end = chunked ? pos + 1 + next_rand(&rnd) % (1 + (seed & 31)) : len;
            if (chunk_end > len)
                chunk_end = len;
        }
        avail = chunk_end - pos;
        st = imap_parse(p, (const char *)in + pos, avail, &consumed);
        CHECK(consumed <= avail);
        pos += consumed;
        if (st == IMAP_AGAIN) {
            CHECK(consumed == avail);
            continue;
        }
        check_event(p, st, r);
        if (st == IMAP_ERROR) {
            size_t again;

            CHECK(imap_parse(p, (const char *)in + pos, len - pos, &again) == IMAP_ERROR);
            CHECK(again == 0);
            if (!(mode & 8))
                break;
            /* Go on after a reset, to reach more states. */
            imap_parser_reset(p);
            pos++;
            continue;
        }
        /* OK, CONTINUE and INVALID always use a byte: no session can spin. */
        CHECK(consumed >= 1);

        if (st == IMAP_INVALID && (mode & 16) && ++invalids % 3 == 0)
            imap_parser_reset(p);
        if (st != IMAP_OK)
            continue;
        if (p->cmd == IMAP_CMD_STARTTLS)
            imap_parser_reset(p);
        if (p->cmd == IMAP_CMD_AUTHENTICATE)
            sasl_lines = (p->arglen[0] == 5 && memcmp(p->args[0], "LOGIN", 5) == 0)
                             ? 3 - p->nargs : 2 - p->nargs;
        else if (p->cmd == IMAP_CMD_SASL_LINE)
            sasl_lines--;
        else if (p->cmd == IMAP_CMD_NOOP && (mode & 4))
            sasl_lines = 1;
        if (sasl_lines > 0)
            imap_parser_expect_line(p);
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
    return 0;
}
