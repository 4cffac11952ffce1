/* filewalk: walk a directory tree, totals per extension (kinship benchmark; read only).
 *
 * Windows: FindFirstFileA / FindNextFileA. Elsewhere: opendir / readdir / stat.
 * -DVERSION2: a depth limit, an extension filter (-e), and the largest file found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <sys/stat.h>
#endif

#define FWK_MAX_EXT 64
#define FWK_MAX_PATH 1024

struct fwk_ext {
    char ext[16];
    unsigned long files;
    unsigned long long bytes;
};

struct fwk_totals {
    struct fwk_ext exts[FWK_MAX_EXT];
    int n_exts;
    unsigned long dirs, files;
    unsigned long long bytes;
#ifdef VERSION2
    char largest[FWK_MAX_PATH];
    unsigned long long largest_size;
    const char *only_ext;
    int max_depth;
#endif
};

static const char *fwk_ext_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    return (dot && dot != name && strlen(dot + 1) < 15) ? dot + 1 : "";
}

static void fwk_account(struct fwk_totals *t, const char *path, const char *name,
                        unsigned long long size)
{
    const char *ext = fwk_ext_of(name);
    int i;
#ifdef VERSION2
    if (t->only_ext && strcmp(ext, t->only_ext) != 0)
        return;
    if (size > t->largest_size) {
        t->largest_size = size;
        snprintf(t->largest, sizeof(t->largest), "%s", path);
    }
#else
    (void)path;
#endif
    t->files++;
    t->bytes += size;
    for (i = 0; i < t->n_exts; i++) {
        if (strcmp(t->exts[i].ext, ext) == 0)
            break;
    }
    if (i == t->n_exts) {
        if (t->n_exts == FWK_MAX_EXT)
            return;
        snprintf(t->exts[i].ext, sizeof(t->exts[i].ext), "%s", ext);
        t->n_exts++;
    }
    t->exts[i].files++;
    t->exts[i].bytes += size;
}

static void fwk_walk(struct fwk_totals *t, const char *dir, int depth)
{
    char path[FWK_MAX_PATH];
#ifdef VERSION2
    if (t->max_depth >= 0 && depth > t->max_depth)
        return;
#else
    if (depth > 64)
        return;
#endif
    t->dirs++;
#ifdef _WIN32
    {
        WIN32_FIND_DATAA fd;
        HANDLE h;
        snprintf(path, sizeof(path), "%s\\*", dir);
        h = FindFirstFileA(path, &fd);
        if (h == INVALID_HANDLE_VALUE)
            return;
        do {
            if (strcmp(fd.cFileName, ".") == 0 || strcmp(fd.cFileName, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s\\%s", dir, fd.cFileName);
            if (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)
                fwk_walk(t, path, depth + 1);
            else
                fwk_account(t, path, fd.cFileName,
                            ((unsigned long long)fd.nFileSizeHigh << 32) | fd.nFileSizeLow);
        } while (FindNextFileA(h, &fd));
        FindClose(h);
    }
#else
    {
        DIR *d = opendir(dir);
        struct dirent *e;
        struct stat st;
        if (!d)
            return;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            if (lstat(path, &st) != 0)
                continue;
            if (S_ISDIR(st.st_mode))
                fwk_walk(t, path, depth + 1);
            else if (S_ISREG(st.st_mode))
                fwk_account(t, path, e->d_name, (unsigned long long)st.st_size);
        }
        closedir(d);
    }
#endif
}

static int fwk_by_bytes(const void *a, const void *b)
{
    const struct fwk_ext *x = (const struct fwk_ext *)a, *y = (const struct fwk_ext *)b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

static void fwk_report(struct fwk_totals *t)
{
    int i;
    qsort(t->exts, (size_t)t->n_exts, sizeof(t->exts[0]), fwk_by_bytes);
    for (i = 0; i < t->n_exts; i++)
        printf("%-12s %8lu files %14llu bytes\n", t->exts[i].ext[0] ? t->exts[i].ext : "(none)",
               t->exts[i].files, t->exts[i].bytes);
    printf("%lu directories, %lu files, %llu bytes\n", t->dirs, t->files, t->bytes);
#ifdef VERSION2
    if (t->largest_size)
        printf("largest: %s (%llu bytes)\n", t->largest, t->largest_size);
#endif
}

int main(int argc, char **argv)
{
    static struct fwk_totals t;
    const char *root = ".";
    int i;
#ifdef VERSION2
    t.max_depth = -1;
#endif
    for (i = 1; i < argc; i++) {
#ifdef VERSION2
        if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
            t.max_depth = atoi(argv[++i]);
            continue;
        }
        if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
            t.only_ext = argv[++i];
            continue;
        }
#endif
        root = argv[i];
    }
    fwk_walk(&t, root, 0);
    fwk_report(&t);
    return 0;
}
