/* Baseline probe: calls into as much of the C runtime as a small program may use, so that the
 * linker pulls those runtime functions in. Every function of ours is named probe_* (or main,
 * DllMain, WinMain): tools/baseline/build_packs.py keeps every *other* function as runtime
 * code. Never run; it only has to link. */
#include <ctype.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

static jmp_buf probe_jb;
volatile int probe_sink;

static int probe_cmp(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

static void probe_log(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fputs(buf, stderr);
}

static void probe_on_signal(int sig) { probe_sink = sig; longjmp(probe_jb, 1); }

static void probe_exit_hook(void) { probe_sink++; }

int probe_strings(int argc, char **argv) {
    char buf[128], *tok, *save = NULL;
    strncpy(buf, argc > 1 ? argv[1] : "a,b,c", sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    for (tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) probe_sink += (int)strlen(tok);
    (void)save;
    probe_sink += strcmp(buf, "x") + strncmp(buf, "y", 1) + (strchr(buf, 'a') != NULL);
    probe_sink += (strrchr(buf, 'b') != NULL) + (strstr(buf, "bc") != NULL);
    memmove(buf + 1, buf, 10);
    memset(buf, 'z', 4);
    probe_sink += memcmp(buf, "zzzz", 4) + (int)strspn(buf, "z") + (int)strcspn(buf, ",");
    strcat(buf, "!");
    for (char *p = buf; *p; p++) *p = (char)(isalpha((unsigned char)*p) ? toupper(*p) : tolower(*p));
    probe_sink += isdigit((unsigned char)buf[0]) + isspace((unsigned char)buf[1]) + isxdigit(buf[2]);
    return probe_sink;
}

int probe_numbers(int argc, char **argv) {
    const char *s = argc > 2 ? argv[2] : "12345";
    long l = strtol(s, NULL, 10);
    unsigned long ul = strtoul(s, NULL, 16);
    double d = strtod(s, NULL) + atof(s);
    long long ll = atoll(s) + strtoll(s, NULL, 8);
    unsigned long long ull = strtoull(s, NULL, 10);
    int64_t q = (int64_t)ll / (l | 1) + (int64_t)ull % (int64_t)(ul | 1);
    uint64_t u = ull / (uint64_t)(ul | 1) + ull % 7u;
    d = sqrt(fabs(d)) + pow(d, 1.5) + floor(d) + ceil(d) + fmod(d, 3.0) + log(d + 1) + exp(d / 1e6);
    d += sin(d) + cos(d) + atan2(d, 2.0) + ldexp(d, 3) + frexp(d, &probe_sink);
    printf("%ld %lu %f %g %e %lld %llu %d %x %o %c %s %p %5.2f%%\n", l, ul, d, d, d,
           (long long)q, (unsigned long long)u, atoi(s), (unsigned)l, (unsigned)l, 'c', s,
           (void *)s, d);
    int n = 0;
    float f = 0;
    char word[32];
    if (sscanf(s, "%d %f %31s", &n, &f, word) > 0) probe_sink += n;
    return (int)(q + (int64_t)u + (int64_t)d);
}

int probe_memory(void) {
    int *a = malloc(64 * sizeof *a), *b;
    if (!a) return -1;
    for (int i = 0; i < 64; i++) a[i] = rand() ^ (i * 7919);
    qsort(a, 64, sizeof *a, probe_cmp);
    int key = a[10];
    probe_sink += bsearch(&key, a, 64, sizeof *a, probe_cmp) != NULL;
    b = realloc(a, 128 * sizeof *a);
    if (!b) { free(a); return -1; }
    a = calloc(16, sizeof *a);
    memcpy(a, b, 16 * sizeof *a);
    free(a);
    free(b);
    char *dup = malloc(32);
    if (dup) { snprintf(dup, 32, "%s-%d", "x", 3); probe_sink += (int)strlen(dup); free(dup); }
    return probe_sink;
}

int probe_files(const char *path) {
    FILE *f = fopen(path, "rb");
    char line[200];
    if (!f) { perror(path); probe_log("errno %d: %s\n", errno, strerror(errno)); return -1; }
    while (fgets(line, sizeof line, f)) probe_sink += (int)strlen(line);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    size_t got = fread(line, 1, sizeof line, f);
    fclose(f);
    FILE *o = fopen("out.tmp", "wb");
    if (o) { fwrite(line, 1, got, o); fprintf(o, "%ld\n", size); fputc('\n', o); fclose(o); }
    remove("out.tmp");
    probe_sink += getc(stdin);
    return (int)size;
}

int probe_time_locale(void) {
    char buf[64];
    time_t now = time(NULL);
    struct tm *tm = localtime(&now);
    if (tm) strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", tm);
    tm = gmtime(&now);
    probe_sink += tm ? tm->tm_year : 0;
    probe_sink += (int)clock() + (int)difftime(now, 0) + (int)mktime(tm);
    setlocale(LC_ALL, "");
    wchar_t w[32];
    mbstowcs(w, "wide", 32);
    probe_sink += (int)wcslen(w) + wcscmp(w, L"x");
    wprintf(L"%ls\n", w);
    srand((unsigned)now);
    const char *env = getenv("HOME");
    return env ? (int)strlen(env) : rand();
}

int main(int argc, char **argv) {
    atexit(probe_exit_hook);
    signal(SIGINT, probe_on_signal);
    if (setjmp(probe_jb)) return 3;
    int r = probe_strings(argc, argv) + probe_numbers(argc, argv) + probe_memory();
    r += probe_files(argc > 3 ? argv[3] : "in.txt") + probe_time_locale();
    puts("done");
    if (r == 42) abort();
    exit(r & 1);
}
