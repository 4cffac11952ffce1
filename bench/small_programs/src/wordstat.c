/* wordstat: lines, words, bytes and the most frequent words of a text (kinship benchmark).
 *
 * -DVERSION2: case folding is optional (-i), words may contain digits, top-N is an argument.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_BUCKETS 1024
#define WS_MAX_WORD 48

struct ws_word {
    char text[WS_MAX_WORD];
    unsigned long count;
    struct ws_word *next;
};

struct ws_counts {
    unsigned long lines, words, bytes;
    unsigned long distinct;
    struct ws_word *table[WS_BUCKETS];
};

static int ws_fold = 1;

static unsigned int ws_hash(const char *s)
{
    unsigned int h = 5381;
    while (*s)
        h = h * 33u + (unsigned char)*s++;
    return h % WS_BUCKETS;
}

static int ws_is_word_char(int c)
{
#ifdef VERSION2
    return isalnum(c) || c == '\'' || c == '_';
#else
    return isalpha(c) || c == '\'';
#endif
}

static void ws_add(struct ws_counts *wc, const char *w)
{
    unsigned int h = ws_hash(w);
    struct ws_word *p;
    for (p = wc->table[h]; p; p = p->next) {
        if (strcmp(p->text, w) == 0) {
            p->count++;
            return;
        }
    }
    p = (struct ws_word *)calloc(1, sizeof(*p));
    if (!p)
        return;
    strncpy(p->text, w, WS_MAX_WORD - 1);
    p->count = 1;
    p->next = wc->table[h];
    wc->table[h] = p;
    wc->distinct++;
}

static void ws_scan(FILE *fp, struct ws_counts *wc)
{
    char word[WS_MAX_WORD];
    int len = 0, c;
    while ((c = fgetc(fp)) != EOF) {
        wc->bytes++;
        if (c == '\n')
            wc->lines++;
        if (ws_is_word_char(c)) {
            if (len < WS_MAX_WORD - 1)
                word[len++] = (char)(ws_fold ? tolower(c) : c);
        } else if (len > 0) {
            word[len] = '\0';
            ws_add(wc, word);
            wc->words++;
            len = 0;
        }
    }
    if (len > 0) {
        word[len] = '\0';
        ws_add(wc, word);
        wc->words++;
    }
}

static int ws_cmp(const void *a, const void *b)
{
    const struct ws_word *x = *(const struct ws_word *const *)a;
    const struct ws_word *y = *(const struct ws_word *const *)b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->text, y->text);
}

static void ws_top(const struct ws_counts *wc, int n)
{
    struct ws_word **all;
    unsigned long k = 0;
    int i;
    all = (struct ws_word **)malloc(sizeof(*all) * (wc->distinct + 1));
    if (!all)
        return;
    for (i = 0; i < WS_BUCKETS; i++) {
        struct ws_word *p;
        for (p = wc->table[i]; p; p = p->next)
            all[k++] = p;
    }
    qsort(all, k, sizeof(*all), ws_cmp);
    for (i = 0; i < n && (unsigned long)i < k; i++)
        printf("%7lu %s\n", all[i]->count, all[i]->text);
    free(all);
}

static void ws_free(struct ws_counts *wc)
{
    int i;
    for (i = 0; i < WS_BUCKETS; i++) {
        struct ws_word *p = wc->table[i];
        while (p) {
            struct ws_word *next = p->next;
            free(p);
            p = next;
        }
    }
}

int main(int argc, char **argv)
{
    static struct ws_counts wc;
    FILE *fp = stdin;
    int top = 10;
    int argi = 1;

#ifdef VERSION2
    ws_fold = 0;
    while (argi < argc && argv[argi][0] == '-') {
        if (strcmp(argv[argi], "-i") == 0)
            ws_fold = 1;
        else if (strcmp(argv[argi], "-n") == 0 && argi + 1 < argc)
            top = atoi(argv[++argi]);
        argi++;
    }
#endif
    if (argi < argc) {
        fp = fopen(argv[argi], "r");
        if (!fp) {
            fprintf(stderr, "wordstat: cannot open %s\n", argv[argi]);
            return 1;
        }
    }
    ws_scan(fp, &wc);
    if (fp != stdin)
        fclose(fp);
    printf("%lu lines, %lu words, %lu bytes, %lu distinct\n", wc.lines, wc.words, wc.bytes,
           wc.distinct);
    ws_top(&wc, top);
    ws_free(&wc);
    return 0;
}
