/* httpreq: builds (and prints) an HTTP/1.1 request from a URL (kinship benchmark).
 *
 * Only formats text: no socket is opened. -DVERSION2: query parameters from the command line
 * are percent-encoded, a Basic auth header, and a proxy form of the request line.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HR_MAX 2048

struct hr_url {
    char scheme[8];
    char host[128];
    int port;
    char path[512];
};

static const char *hr_user_agent =
#ifdef VERSION2
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36";
#else
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)";
#endif

static int hr_parse_url(const char *url, struct hr_url *u)
{
    const char *p = strstr(url, "://"), *host, *slash, *colon;
    size_t n;
    memset(u, 0, sizeof(*u));
    if (!p || (size_t)(p - url) >= sizeof(u->scheme))
        return -1;
    memcpy(u->scheme, url, (size_t)(p - url));
    host = p + 3;
    slash = strchr(host, '/');
    n = slash ? (size_t)(slash - host) : strlen(host);
    if (n == 0 || n >= sizeof(u->host))
        return -1;
    memcpy(u->host, host, n);
    colon = strchr(u->host, ':');
    if (colon) {
        u->port = atoi(colon + 1);
        u->host[colon - u->host] = '\0';
    } else {
        u->port = strcmp(u->scheme, "https") == 0 ? 443 : 80;
    }
    snprintf(u->path, sizeof(u->path), "%s", slash ? slash : "/");
    return 0;
}

static size_t hr_percent(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in && o + 4 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

#ifdef VERSION2
static void hr_base64(const char *in, char *out, size_t cap)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), i, o = 0;
    for (i = 0; i < n && o + 5 < cap; i += 3) {
        unsigned long v = (unsigned long)(unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned long)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}
#endif

static int hr_header(char *buf, size_t cap, size_t *len, const char *name, const char *value)
{
    int n = snprintf(buf + *len, cap - *len, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= cap - *len)
        return -1;
    *len += (size_t)n;
    return 0;
}

static int hr_build(char *buf, size_t cap, const struct hr_url *u, const char *method,
                    int argc, char **argv)
{
    char hostport[160], target[1024], enc[256];
    size_t len;
    int i, n;
    snprintf(target, sizeof(target), "%s", u->path);
    for (i = 0; i < argc; i++) {
        hr_percent(argv[i], enc, sizeof(enc));
        strncat(target, i == 0 && !strchr(u->path, '?') ? "?" : "&",
                sizeof(target) - strlen(target) - 1);
        strncat(target, enc, sizeof(target) - strlen(target) - 1);
    }
#ifdef VERSION2
    n = snprintf(buf, cap, "%s %s://%s:%d%s HTTP/1.1\r\n", method, u->scheme, u->host, u->port,
                 target);
#else
    n = snprintf(buf, cap, "%s %s HTTP/1.1\r\n", method, target);
#endif
    if (n < 0 || (size_t)n >= cap)
        return -1;
    len = (size_t)n;
    if ((u->port == 80 && strcmp(u->scheme, "http") == 0) || u->port == 443)
        snprintf(hostport, sizeof(hostport), "%s", u->host);
    else
        snprintf(hostport, sizeof(hostport), "%s:%d", u->host, u->port);
    if (hr_header(buf, cap, &len, "Host", hostport) || hr_header(buf, cap, &len, "User-Agent", hr_user_agent) ||
        hr_header(buf, cap, &len, "Accept", "*/*") ||
        hr_header(buf, cap, &len, "Connection", "close"))
        return -1;
#ifdef VERSION2
    {
        const char *cred = getenv("HTTPREQ_USER");
        if (cred) {
            char b64[256], value[280];
            hr_base64(cred, b64, sizeof(b64));
            snprintf(value, sizeof(value), "Basic %s", b64);
            if (hr_header(buf, cap, &len, "Authorization", value))
                return -1;
        }
    }
#endif
    if (len + 3 > cap)
        return -1;
    memcpy(buf + len, "\r\n", 3);
    return (int)(len + 2);
}

int main(int argc, char **argv)
{
    static char req[HR_MAX];
    struct hr_url u;
    const char *method = "GET";
    int first = 2;
    if (argc < 2) {
        fprintf(stderr, "usage: httpreq URL [-X METHOD] [param=value...]\n");
        return 2;
    }
    if (hr_parse_url(argv[1], &u) != 0) {
        fprintf(stderr, "httpreq: bad URL %s\n", argv[1]);
        return 1;
    }
    if (argc > 3 && strcmp(argv[2], "-X") == 0) {
        method = argv[3];
        first = 4;
    }
    if (hr_build(req, sizeof(req), &u, method, argc - first, argv + first) < 0) {
        fprintf(stderr, "httpreq: request too long\n");
        return 1;
    }
    fputs(req, stdout);
    return 0;
}
