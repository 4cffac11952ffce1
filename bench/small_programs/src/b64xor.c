/* b64xor: base64 encode/decode with an optional repeating-xor layer (kinship benchmark).
 *
 * -DVERSION2: URL-safe alphabet, a rolling key (key byte + position) and line wrapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BX_CHUNK 3072
#ifdef VERSION2
#define BX_WRAP 76
static const char bx_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
#else
#define BX_WRAP 0
static const char bx_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
#endif

static int bx_column = 0;

static void bx_xor(unsigned char *buf, size_t n, const char *key, size_t offset)
{
    size_t klen = strlen(key), i;
    if (klen == 0)
        return;
    for (i = 0; i < n; i++) {
#ifdef VERSION2
        buf[i] ^= (unsigned char)(key[(offset + i) % klen] + (unsigned char)(offset + i));
#else
        buf[i] ^= (unsigned char)key[(offset + i) % klen];
#endif
    }
}

static void bx_put(char c)
{
    putchar(c);
    if (BX_WRAP > 0 && ++bx_column == BX_WRAP) {
        putchar('\n');
        bx_column = 0;
    }
}

static void bx_encode_block(const unsigned char *in, size_t n)
{
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        bx_put(bx_alphabet[(v >> 18) & 63]);
        bx_put(bx_alphabet[(v >> 12) & 63]);
        bx_put(bx_alphabet[(v >> 6) & 63]);
        bx_put(bx_alphabet[v & 63]);
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        bx_put(bx_alphabet[(v >> 18) & 63]);
        bx_put(bx_alphabet[(v >> 12) & 63]);
        bx_put('=');
        bx_put('=');
    } else if (n - i == 2) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        bx_put(bx_alphabet[(v >> 18) & 63]);
        bx_put(bx_alphabet[(v >> 12) & 63]);
        bx_put(bx_alphabet[(v >> 6) & 63]);
        bx_put('=');
    }
}

static int bx_value(int c)
{
    const char *p;
    if (c == '=')
        return -2;
    p = strchr(bx_alphabet, c);
    return (p && c) ? (int)(p - bx_alphabet) : -1;
}

static int bx_decode(FILE *in, const char *key)
{
    int quad[4], k = 0, c;
    size_t pos = 0;
    while ((c = fgetc(in)) != EOF) {
        int v = bx_value(c);
        if (v == -1)
            continue; /* whitespace and junk */
        quad[k++] = v;
        if (k == 4) {
            unsigned char out[3];
            size_t n = 3;
            unsigned long w = 0;
            int j;
            for (j = 0; j < 4; j++)
                w = (w << 6) | (unsigned long)(quad[j] < 0 ? 0 : quad[j]);
            out[0] = (unsigned char)(w >> 16);
            out[1] = (unsigned char)(w >> 8);
            out[2] = (unsigned char)w;
            if (quad[3] == -2)
                n = quad[2] == -2 ? 1 : 2;
            bx_xor(out, n, key, pos);
            fwrite(out, 1, n, stdout);
            pos += n;
            k = 0;
        }
    }
    return k == 0 ? 0 : 1;
}

static int bx_encode(FILE *in, const char *key)
{
    static unsigned char buf[BX_CHUNK];
    size_t n, pos = 0;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        bx_xor(buf, n, key, pos);
        bx_encode_block(buf, n);
        pos += n;
    }
    putchar('\n');
    return 0;
}

int main(int argc, char **argv)
{
    const char *key = "";
    int decode = 0, i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-d") == 0)
            decode = 1;
        else if (strcmp(argv[i], "-k") == 0 && i + 1 < argc)
            key = argv[++i];
        else {
            fprintf(stderr, "usage: b64xor [-d] [-k KEY] < in > out\n");
            return 2;
        }
    }
    return decode ? bx_decode(stdin, key) : bx_encode(stdin, key);
}
