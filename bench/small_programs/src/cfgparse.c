/* cfgparse: an INI-style configuration parser with typed getters (kinship benchmark).
 *
 * -DVERSION2: line continuations, quoted values, and a dump in "section.key=value" form.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_ENTRIES 256
#define CFG_MAX_LINE 512

struct cfg_entry {
    char section[64];
    char key[64];
    char value[256];
};

struct cfg {
    struct cfg_entry entries[CFG_MAX_ENTRIES];
    int count;
    int errors;
};

static char *cfg_trim(char *s)
{
    char *end;
    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

#ifdef VERSION2
static void cfg_unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        memmove(v, v + 1, n - 2);
        v[n - 2] = '\0';
    }
}
#endif

static int cfg_set(struct cfg *c, const char *section, const char *key, const char *value)
{
    struct cfg_entry *e;
    int i;
    for (i = 0; i < c->count; i++) {
        e = &c->entries[i];
        if (strcmp(e->section, section) == 0 && strcmp(e->key, key) == 0) {
            snprintf(e->value, sizeof(e->value), "%s", value);
            return 0;
        }
    }
    if (c->count >= CFG_MAX_ENTRIES)
        return -1;
    e = &c->entries[c->count++];
    snprintf(e->section, sizeof(e->section), "%s", section);
    snprintf(e->key, sizeof(e->key), "%s", key);
    snprintf(e->value, sizeof(e->value), "%s", value);
    return 0;
}

static int cfg_parse(struct cfg *c, FILE *fp)
{
    char line[CFG_MAX_LINE];
    char section[64] = "";
    int lineno = 0;
    while (fgets(line, sizeof(line), fp)) {
        char *s = cfg_trim(line), *eq;
        lineno++;
#ifdef VERSION2
        while (strlen(s) > 0 && s[strlen(s) - 1] == '\\') {
            char more[CFG_MAX_LINE];
            s[strlen(s) - 1] = '\0';
            if (!fgets(more, sizeof(more), fp))
                break;
            lineno++;
            strncat(s, cfg_trim(more), CFG_MAX_LINE - strlen(s) - 1);
        }
#endif
        if (*s == '\0' || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close) {
                fprintf(stderr, "cfgparse: line %d: unterminated section\n", lineno);
                c->errors++;
                continue;
            }
            *close = '\0';
            snprintf(section, sizeof(section), "%s", cfg_trim(s + 1));
            continue;
        }
        eq = strchr(s, '=');
        if (!eq) {
            fprintf(stderr, "cfgparse: line %d: expected key = value\n", lineno);
            c->errors++;
            continue;
        }
        *eq = '\0';
        {
            char *v = cfg_trim(eq + 1);
#ifdef VERSION2
            cfg_unquote(v);
#endif
            if (cfg_set(c, section, cfg_trim(s), v) != 0)
                c->errors++;
        }
    }
    return c->errors;
}

static const char *cfg_get(const struct cfg *c, const char *section, const char *key,
                           const char *def)
{
    int i;
    for (i = 0; i < c->count; i++)
        if (strcmp(c->entries[i].section, section) == 0 && strcmp(c->entries[i].key, key) == 0)
            return c->entries[i].value;
    return def;
}

static long cfg_get_int(const struct cfg *c, const char *section, const char *key, long def)
{
    const char *v = cfg_get(c, section, key, NULL);
    char *end;
    long n;
    if (!v)
        return def;
    n = strtol(v, &end, 0);
    return *end == '\0' ? n : def;
}

static int cfg_get_bool(const struct cfg *c, const char *section, const char *key, int def)
{
    const char *v = cfg_get(c, section, key, NULL);
    if (!v)
        return def;
    if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
        strcmp(v, "on") == 0)
        return 1;
    if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
        strcmp(v, "off") == 0)
        return 0;
    return def;
}

static void cfg_dump(const struct cfg *c)
{
    int i;
    for (i = 0; i < c->count; i++) {
#ifdef VERSION2
        printf("%s.%s=%s\n", c->entries[i].section, c->entries[i].key, c->entries[i].value);
#else
        printf("[%s] %s = %s\n", c->entries[i].section, c->entries[i].key,
               c->entries[i].value);
#endif
    }
}

int main(int argc, char **argv)
{
    static struct cfg c;
    FILE *fp = argc > 1 ? fopen(argv[1], "r") : stdin;
    if (!fp) {
        fprintf(stderr, "cfgparse: cannot open %s\n", argv[1]);
        return 1;
    }
    cfg_parse(&c, fp);
    if (fp != stdin)
        fclose(fp);
    cfg_dump(&c);
    printf("server.port=%ld server.tls=%d log.level=%s (%d errors)\n",
           cfg_get_int(&c, "server", "port", 8080), cfg_get_bool(&c, "server", "tls", 0),
           cfg_get(&c, "log", "level", "info"), c.errors);
    return c.errors ? 2 : 0;
}
