/* beacon: a stand-in for an implant's check-in message builder.
 *
 * Written for kinship's benchmark. It collects a few host facts, encodes a check-in line the
 * way small implants do (xor + hex, a jittered interval) and PRINTS it. No socket is opened;
 * nothing is sent; the benchmark only compiles this file.
 *
 * -DVERSION2: adds a session id, another encoding key and a sleep-skew check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#define BC_INTERVAL_S 60
#define BC_JITTER_PCT 20
#define BC_MAX_LINE 600

#ifdef VERSION2
static const char bc_key[] = "q9#Lm2!xZ";
#define BC_MAGIC 0x4b1d2019u
#else
static const char bc_key[] = "Kv7#pQ";
#define BC_MAGIC 0x4b1d2016u
#endif

struct bc_host {
    char name[64];
    char user[64];
    unsigned int pid;
    unsigned int ticks;
};

static unsigned int bc_rng_state = 0x1234567u;

static unsigned int bc_rand(void)
{
    bc_rng_state ^= bc_rng_state << 13;
    bc_rng_state ^= bc_rng_state >> 17;
    bc_rng_state ^= bc_rng_state << 5;
    return bc_rng_state;
}

static void bc_collect(struct bc_host *h)
{
    memset(h, 0, sizeof(*h));
#ifdef _WIN32
    DWORD n = sizeof(h->name);
    if (!GetComputerNameA(h->name, &n))
        strcpy(h->name, "?");
    n = sizeof(h->user);
    if (!GetEnvironmentVariableA("USERNAME", h->user, n))
        strcpy(h->user, "?");
    h->pid = (unsigned int)GetCurrentProcessId();
    h->ticks = (unsigned int)GetTickCount();
#else
    const char *u = getenv("USER");
    if (gethostname(h->name, sizeof(h->name) - 1) != 0)
        strcpy(h->name, "?");
    snprintf(h->user, sizeof(h->user), "%s", u ? u : "?");
    h->pid = (unsigned int)getpid();
    h->ticks = (unsigned int)clock();
#endif
}

static size_t bc_xor_hex(const char *in, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    size_t klen = strlen(bc_key);
    size_t i, o = 0;
    for (i = 0; in[i] != '\0' && o + 2 < cap; i++) {
        unsigned char c = (unsigned char)(in[i] ^ bc_key[i % klen]);
        out[o++] = digits[c >> 4];
        out[o++] = digits[c & 15];
    }
    out[o] = '\0';
    return o;
}

static unsigned int bc_checksum(const char *s)
{
    unsigned int h = BC_MAGIC;
    while (*s) {
        h = (h ^ (unsigned char)*s++) * 16777619u;
    }
    return h;
}

static int bc_next_interval(void)
{
    int spread = BC_INTERVAL_S * BC_JITTER_PCT / 100;
    int delta = (int)(bc_rand() % (unsigned int)(2 * spread + 1)) - spread;
    return BC_INTERVAL_S + delta;
}

#ifdef VERSION2
static void bc_session_id(char *out, size_t cap, const struct bc_host *h)
{
    snprintf(out, cap, "%08x-%04x", bc_checksum(h->name) ^ h->ticks, h->pid & 0xffff);
}

static int bc_sleep_skewed(int expected_ms)
{
    unsigned int before = (unsigned int)clock();
    unsigned int after = before + (unsigned int)expected_ms; /* not slept: only computed */
    return (after - before) < (unsigned int)(expected_ms / 2);
}
#endif

static void bc_format(char *line, size_t cap, const struct bc_host *h, int seq)
{
    char plain[256];
    char enc[BC_MAX_LINE / 2];
#ifdef VERSION2
    char sid[32];
    bc_session_id(sid, sizeof(sid), h);
    snprintf(plain, sizeof(plain), "v=2|sid=%s|host=%s|user=%s|pid=%u|seq=%d", sid, h->name,
             h->user, h->pid, seq);
#else
    snprintf(plain, sizeof(plain), "v=1|host=%s|user=%s|pid=%u|seq=%d", h->name, h->user,
             h->pid, seq);
#endif
    bc_xor_hex(plain, enc, sizeof(enc));
    snprintf(line, cap, "GET /updates/check?d=%s&c=%08x", enc, bc_checksum(plain));
}

int main(int argc, char **argv)
{
    struct bc_host host;
    char line[BC_MAX_LINE];
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    int i;

    if (rounds < 1 || rounds > 100)
        rounds = 3;
    bc_rng_state ^= (unsigned int)time(NULL);
    bc_collect(&host);
    for (i = 0; i < rounds; i++) {
        bc_format(line, sizeof(line), &host, i);
        printf("%s\n", line);
        printf("next check-in in %d s (not sleeping)\n", bc_next_interval());
#ifdef VERSION2
        if (bc_sleep_skewed(1000))
            printf("sleep skew detected\n");
#endif
    }
    return 0;
}
