/* sumtool: CRC-32, Adler-32 and Fletcher-16 of files or stdin (kinship benchmark program).
 *
 * -DVERSION2: adds a table-less CRC-32C, a "-c" check mode and a bigger read buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef VERSION2
#define SUM_BUF 16384
#else
#define SUM_BUF 4096
#endif

struct sum_state {
    unsigned long crc;
    unsigned long a, b;
    unsigned int f1, f2;
    unsigned long long length;
#ifdef VERSION2
    unsigned long crc32c;
#endif
};

static unsigned long sum_crc_table[256];

static void sum_make_table(void)
{
    unsigned long c;
    int n, k;
    for (n = 0; n < 256; n++) {
        c = (unsigned long)n;
        for (k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320UL ^ (c >> 1) : c >> 1;
        sum_crc_table[n] = c;
    }
}

static void sum_init(struct sum_state *s)
{
    memset(s, 0, sizeof(*s));
    s->crc = 0xffffffffUL;
    s->a = 1;
#ifdef VERSION2
    s->crc32c = 0xffffffffUL;
#endif
}

static void sum_update(struct sum_state *s, const unsigned char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        s->crc = sum_crc_table[(s->crc ^ p[i]) & 0xff] ^ (s->crc >> 8);
        s->a = (s->a + p[i]) % 65521UL;
        s->b = (s->b + s->a) % 65521UL;
        s->f1 = (s->f1 + p[i]) % 255u;
        s->f2 = (s->f2 + s->f1) % 255u;
#ifdef VERSION2
        {
            int k;
            s->crc32c ^= p[i];
            for (k = 0; k < 8; k++)
                s->crc32c = (s->crc32c >> 1) ^ (0x82f63b78UL & (0UL - (s->crc32c & 1)));
        }
#endif
    }
    s->length += n;
}

static int sum_stream(FILE *fp, struct sum_state *s)
{
    static unsigned char buf[SUM_BUF];
    size_t n;
    sum_init(s);
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        sum_update(s, buf, n);
    return ferror(fp) ? -1 : 0;
}

static void sum_print(const char *name, const struct sum_state *s)
{
    printf("%08lx  %08lx  %04x  %10llu  %s\n", (s->crc ^ 0xffffffffUL) & 0xffffffffUL,
           ((s->b << 16) | s->a) & 0xffffffffUL, (s->f2 << 8) | s->f1, s->length, name);
#ifdef VERSION2
    printf("crc32c %08lx\n", (s->crc32c ^ 0xffffffffUL) & 0xffffffffUL);
#endif
}

#ifdef VERSION2
static int sum_check(const char *name, const char *expected)
{
    struct sum_state s;
    char got[16];
    FILE *fp = fopen(name, "rb");
    if (!fp) {
        fprintf(stderr, "sumtool: cannot open %s\n", name);
        return 2;
    }
    sum_stream(fp, &s);
    fclose(fp);
    snprintf(got, sizeof(got), "%08lx", (s.crc ^ 0xffffffffUL) & 0xffffffffUL);
    printf("%s: %s\n", name, strcmp(got, expected) == 0 ? "OK" : "FAILED");
    return strcmp(got, expected) != 0;
}
#endif

static void sum_usage(void)
{
    fprintf(stderr, "usage: sumtool [FILE...]\n");
#ifdef VERSION2
    fprintf(stderr, "       sumtool -c CRC FILE\n");
#endif
}

int main(int argc, char **argv)
{
    struct sum_state s;
    int i, rc = 0;

    sum_make_table();
#ifdef VERSION2
    if (argc == 4 && strcmp(argv[1], "-c") == 0)
        return sum_check(argv[3], argv[2]);
#endif
    if (argc > 1 && strcmp(argv[1], "-h") == 0) {
        sum_usage();
        return 0;
    }
    if (argc == 1) {
        if (sum_stream(stdin, &s) == 0)
            sum_print("-", &s);
        return 0;
    }
    for (i = 1; i < argc; i++) {
        FILE *fp = fopen(argv[i], "rb");
        if (!fp) {
            fprintf(stderr, "sumtool: cannot open %s\n", argv[i]);
            rc = 1;
            continue;
        }
        if (sum_stream(fp, &s) == 0)
            sum_print(argv[i], &s);
        else
            rc = 1;
        fclose(fp);
    }
    return rc;
}
