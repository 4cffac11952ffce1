/* kvstore: an open-addressing key-value store with a text command language (kinship benchmark).
 *
 * Reads commands ("set k v", "get k", "del k", "dump") from stdin; prints results.
 * -DVERSION2: the table grows (rehash), keys expire after N commands ("setx k v n"), stats.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_MAX_KEY 64
#define KV_MAX_VAL 192
#ifdef VERSION2
#define KV_INITIAL 64
#else
#define KV_INITIAL 512
#endif

struct kv_slot {
    char key[KV_MAX_KEY];
    char val[KV_MAX_VAL];
    int used;    /* 0 empty, 1 live, 2 deleted (tombstone) */
#ifdef VERSION2
    long expires; /* command number, or 0 */
#endif
};

struct kv_table {
    struct kv_slot *slots;
    size_t cap;
    size_t live;
    long clock;
};

static unsigned long kv_hash(const char *s)
{
    unsigned long h = 14695981039346656037UL & 0xffffffffUL;
    while (*s)
        h = ((h ^ (unsigned char)*s++) * 16777619UL) & 0xffffffffUL;
    return h;
}

static int kv_init(struct kv_table *t, size_t cap)
{
    t->slots = (struct kv_slot *)calloc(cap, sizeof(struct kv_slot));
    t->cap = cap;
    t->live = 0;
    return t->slots ? 0 : -1;
}

static struct kv_slot *kv_find(struct kv_table *t, const char *key, int for_insert)
{
    size_t i = kv_hash(key) % t->cap, n;
    struct kv_slot *tomb = NULL;
    for (n = 0; n < t->cap; n++, i = (i + 1) % t->cap) {
        struct kv_slot *s = &t->slots[i];
        if (s->used == 0)
            return for_insert ? (tomb ? tomb : s) : NULL;
        if (s->used == 2) {
            if (!tomb)
                tomb = s;
            continue;
        }
        if (strcmp(s->key, key) == 0) {
#ifdef VERSION2
            if (s->expires && s->expires <= t->clock) {
                s->used = 2;
                t->live--;
                if (!tomb)
                    tomb = s;
                continue;
            }
#endif
            return s;
        }
    }
    return for_insert ? tomb : NULL;
}

#ifdef VERSION2
static int kv_set(struct kv_table *t, const char *key, const char *val, long ttl);

static int kv_grow(struct kv_table *t)
{
    struct kv_table bigger;
    size_t i;
    if (kv_init(&bigger, t->cap * 2) != 0)
        return -1;
    bigger.clock = t->clock;
    for (i = 0; i < t->cap; i++)
        if (t->slots[i].used == 1)
            kv_set(&bigger, t->slots[i].key, t->slots[i].val,
                   t->slots[i].expires ? t->slots[i].expires - t->clock : 0);
    free(t->slots);
    *t = bigger;
    return 0;
}
#endif

static int kv_set(struct kv_table *t, const char *key, const char *val, long ttl)
{
    struct kv_slot *s;
#ifdef VERSION2
    if ((t->live + 1) * 4 > t->cap * 3 && kv_grow(t) != 0)
        return -1;
#else
    (void)ttl;
#endif
    s = kv_find(t, key, 1);
    if (!s)
        return -1;
    if (s->used != 1)
        t->live++;
    s->used = 1;
    snprintf(s->key, sizeof(s->key), "%s", key);
    snprintf(s->val, sizeof(s->val), "%s", val);
#ifdef VERSION2
    s->expires = ttl > 0 ? t->clock + ttl : 0;
#endif
    return 0;
}

static int kv_del(struct kv_table *t, const char *key)
{
    struct kv_slot *s = kv_find(t, key, 0);
    if (!s)
        return -1;
    s->used = 2;
    t->live--;
    return 0;
}

static void kv_dump(const struct kv_table *t)
{
    size_t i;
    for (i = 0; i < t->cap; i++)
        if (t->slots[i].used == 1)
            printf("%s=%s\n", t->slots[i].key, t->slots[i].val);
}

int main(void)
{
    struct kv_table t;
    char line[512], cmd[16], key[KV_MAX_KEY], val[KV_MAX_VAL];
    if (kv_init(&t, KV_INITIAL) != 0)
        return 1;
    t.clock = 0;
    while (fgets(line, sizeof(line), stdin)) {
        int n = sscanf(line, "%15s %63s %191[^\n]", cmd, key, val);
        t.clock++;
        if (n >= 3 && strcmp(cmd, "set") == 0) {
            puts(kv_set(&t, key, val, 0) == 0 ? "OK" : "FULL");
#ifdef VERSION2
        } else if (n >= 3 && strcmp(cmd, "setx") == 0) {
            char *sp = strrchr(val, ' ');
            long ttl = sp ? strtol(sp + 1, NULL, 10) : 0;
            if (sp)
                *sp = '\0';
            puts(kv_set(&t, key, val, ttl) == 0 ? "OK" : "FULL");
        } else if (n >= 1 && strcmp(cmd, "stats") == 0) {
            printf("live=%lu cap=%lu clock=%ld\n", (unsigned long)t.live, (unsigned long)t.cap,
                   t.clock);
#endif
        } else if (n >= 2 && strcmp(cmd, "get") == 0) {
            struct kv_slot *s = kv_find(&t, key, 0);
            puts(s ? s->val : "(nil)");
        } else if (n >= 2 && strcmp(cmd, "del") == 0) {
            puts(kv_del(&t, key) == 0 ? "OK" : "(nil)");
        } else if (n >= 1 && strcmp(cmd, "dump") == 0) {
            kv_dump(&t);
        } else if (n >= 1) {
            fprintf(stderr, "kvstore: unknown command %s\n", cmd);
        }
    }
    free(t.slots);
    return 0;
}
