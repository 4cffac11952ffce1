/* proclist: list running processes, with a filter and a summary (kinship benchmark).
 *
 * Windows: CreateToolhelp32Snapshot / Process32First / Process32Next (read only).
 * Elsewhere: /proc/<pid>/stat. -DVERSION2: parent ids, a sort by name, and a flag for
 * processes whose name looks like an analysis tool (printed, nothing else done).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <tlhelp32.h>
#else
#include <dirent.h>
#endif

#define PL_MAX 1024

struct pl_proc {
    unsigned long pid;
    unsigned long ppid;
    char name[64];
};

static struct pl_proc pl_procs[PL_MAX];

#ifdef VERSION2
static const char *const pl_watch[] = {"procmon", "wireshark", "x64dbg", "ollydbg",
                                       "tcpview", "processhacker", NULL};
#endif

static int pl_collect(void)
{
    int n = 0;
#ifdef _WIN32
    PROCESSENTRY32 pe;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    if (snap == INVALID_HANDLE_VALUE)
        return -1;
    pe.dwSize = sizeof(pe);
    if (Process32First(snap, &pe)) {
        do {
            pl_procs[n].pid = pe.th32ProcessID;
            pl_procs[n].ppid = pe.th32ParentProcessID;
            snprintf(pl_procs[n].name, sizeof(pl_procs[n].name), "%s", pe.szExeFile);
            n++;
        } while (n < PL_MAX && Process32Next(snap, &pe));
    }
    CloseHandle(snap);
#else
    DIR *d = opendir("/proc");
    struct dirent *e;
    if (!d)
        return -1;
    while (n < PL_MAX && (e = readdir(d)) != NULL) {
        char path[300], comm[64];
        unsigned long ppid = 0;
        FILE *fp;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        fp = fopen(path, "r");
        if (!fp)
            continue;
        if (fscanf(fp, "%*d (%63[^)]) %*c %lu", comm, &ppid) == 2) {
            pl_procs[n].pid = strtoul(e->d_name, NULL, 10);
            pl_procs[n].ppid = ppid;
            snprintf(pl_procs[n].name, sizeof(pl_procs[n].name), "%s", comm);
            n++;
        }
        fclose(fp);
    }
    closedir(d);
#endif
    return n;
}

static int pl_match(const char *name, const char *filter)
{
    char a[64], b[64];
    size_t i;
    for (i = 0; name[i] && i + 1 < sizeof(a); i++)
        a[i] = (char)tolower((unsigned char)name[i]);
    a[i] = '\0';
    for (i = 0; filter[i] && i + 1 < sizeof(b); i++)
        b[i] = (char)tolower((unsigned char)filter[i]);
    b[i] = '\0';
    return strstr(a, b) != NULL;
}

#ifdef VERSION2
static int pl_by_name(const void *x, const void *y)
{
    const struct pl_proc *a = (const struct pl_proc *)x, *b = (const struct pl_proc *)y;
    return strcmp(a->name, b->name);
}

static int pl_watched(const char *name)
{
    int i;
    for (i = 0; pl_watch[i]; i++)
        if (pl_match(name, pl_watch[i]))
            return 1;
    return 0;
}
#endif

static void pl_print(int n, const char *filter)
{
    int i, shown = 0;
#ifdef VERSION2
    qsort(pl_procs, (size_t)n, sizeof(pl_procs[0]), pl_by_name);
    printf("%8s %8s  %s\n", "PID", "PPID", "NAME");
#else
    printf("%8s  %s\n", "PID", "NAME");
#endif
    for (i = 0; i < n; i++) {
        if (filter && !pl_match(pl_procs[i].name, filter))
            continue;
#ifdef VERSION2
        printf("%8lu %8lu  %s%s\n", pl_procs[i].pid, pl_procs[i].ppid, pl_procs[i].name,
               pl_watched(pl_procs[i].name) ? "  [watched]" : "");
#else
        printf("%8lu  %s\n", pl_procs[i].pid, pl_procs[i].name);
#endif
        shown++;
    }
    printf("%d of %d processes\n", shown, n);
}

int main(int argc, char **argv)
{
    int n = pl_collect();
    if (n < 0) {
        fprintf(stderr, "proclist: cannot list processes\n");
        return 1;
    }
    pl_print(n, argc > 1 ? argv[1] : NULL);
    return 0;
}
