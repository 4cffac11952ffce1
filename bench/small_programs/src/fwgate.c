/* fwgate: a stand-in for a small "open a firewall port for a backdoor" tool.
 *
 * Written for kinship's benchmark (bench/small_programs.py). It only BUILDS command strings
 * (netsh / schtasks) and PRINTS them: nothing is executed, no socket is opened, no file or
 * registry key is written. The benchmark never runs it anyway; it only compiles it.
 *
 * -DVERSION2: the "2019 rebuild": another port, a persistence command, a rule-name scheme.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#endif

#define FW_MAX_CMD 512
#define FW_MAX_RULES 8

#ifdef VERSION2
#define FW_DEFAULT_PORT 8443
#define FW_RULE_PREFIX "WinDefend Update "
#else
#define FW_DEFAULT_PORT 4444
#define FW_RULE_PREFIX "Core Networking "
#endif

struct fw_rule {
    char name[64];
    int port;
    int tcp;
    int inbound;
};

static const unsigned char fw_obf_key[4] = {0x5a, 0x13, 0x77, 0x2c};

/* The program name is stored xor-ed, as small implants often do. */
static const unsigned char fw_obf_netsh[] = {0x34, 0x76, 0x03, 0x5f, 0x32, 0x3d, 0x12, 0x54,
                                             0x3f, 0x00};

static void fw_deobfuscate(const unsigned char *in, size_t n, char *out, size_t cap)
{
    size_t i;
    for (i = 0; i < n && i + 1 < cap; i++)
        out[i] = (char)(in[i] ^ fw_obf_key[i % sizeof(fw_obf_key)]);
    out[i] = '\0';
}

static int fw_port_from_args(int argc, char **argv)
{
    int i;
    for (i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-p") == 0) {
            long v = strtol(argv[i + 1], NULL, 10);
            if (v > 0 && v < 65536)
                return (int)v;
        }
    }
    return FW_DEFAULT_PORT;
}

static void fw_rule_name(struct fw_rule *r, int index)
{
#ifdef VERSION2
    snprintf(r->name, sizeof(r->name), "%s(KB%06d)", FW_RULE_PREFIX, 450000 + index * 17);
#else
    snprintf(r->name, sizeof(r->name), "%s(TCP-In-%d)", FW_RULE_PREFIX, index);
#endif
}

static int fw_build_rules(struct fw_rule *rules, int port)
{
    int n = 0;
    rules[n].port = port;
    rules[n].tcp = 1;
    rules[n].inbound = 1;
    fw_rule_name(&rules[n], n);
    n++;
    rules[n].port = port + 1;
    rules[n].tcp = 0;
    rules[n].inbound = 1;
    fw_rule_name(&rules[n], n);
    n++;
#ifdef VERSION2
    rules[n].port = 3389;
    rules[n].tcp = 1;
    rules[n].inbound = 1;
    fw_rule_name(&rules[n], n);
    n++;
#endif
    return n;
}

static int fw_format_add(char *buf, size_t cap, const struct fw_rule *r)
{
    char tool[16];
    fw_deobfuscate(fw_obf_netsh, 9, tool, sizeof(tool));
    return snprintf(buf, cap,
                    "%s advfirewall firewall add rule name=\"%s\" dir=%s action=allow "
                    "protocol=%s localport=%d",
                    tool, r->name, r->inbound ? "in" : "out", r->tcp ? "TCP" : "UDP", r->port);
}

static int fw_format_legacy(char *buf, size_t cap, const struct fw_rule *r)
{
    return snprintf(buf, cap, "netsh firewall add portopening %s %d \"%s\" ENABLE ALL",
                    r->tcp ? "TCP" : "UDP", r->port, r->name);
}

static int fw_format_delete(char *buf, size_t cap, const struct fw_rule *r)
{
    return snprintf(buf, cap, "netsh advfirewall firewall delete rule name=\"%s\"", r->name);
}

#ifdef VERSION2
static int fw_format_persist(char *buf, size_t cap, const char *self_path)
{
    return snprintf(buf, cap,
                    "schtasks /create /tn \"Microsoft\\Windows\\NetTrace\\GatherNetworkInfo2\" "
                    "/tr \"%s -p %d\" /sc onlogon /rl highest /f",
                    self_path, FW_DEFAULT_PORT);
}
#endif

static int fw_is_modern_os(void)
{
#ifdef _WIN32
    OSVERSIONINFOA vi;
    memset(&vi, 0, sizeof(vi));
    vi.dwOSVersionInfoSize = sizeof(vi);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    if (!GetVersionExA(&vi))
        return 1;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    return vi.dwMajorVersion >= 6;
#else
    return 1;
#endif
}

/* Print (never run) what a real tool would run, with a fake wait/cleanup plan. */
static void fw_show_plan(const char *cmd, int wait_ms)
{
    printf("[plan] CreateProcess(\"cmd.exe /c %s\")\n", cmd);
    printf("[plan] WaitForSingleObject(hProcess, %d); CloseHandle(hProcess); Sleep(%d)\n",
           wait_ms, wait_ms / 4);
}

int main(int argc, char **argv)
{
    struct fw_rule rules[FW_MAX_RULES];
    char cmd[FW_MAX_CMD];
    int port = fw_port_from_args(argc, argv);
    int n = fw_build_rules(rules, port);
    int modern = fw_is_modern_os();
    int i;

    for (i = 0; i < n; i++) {
        if (modern)
            fw_format_add(cmd, sizeof(cmd), &rules[i]);
        else
            fw_format_legacy(cmd, sizeof(cmd), &rules[i]);
        fw_show_plan(cmd, 5000);
    }
#ifdef VERSION2
    fw_format_persist(cmd, sizeof(cmd), argc > 0 ? argv[0] : "fwgate.exe");
    fw_show_plan(cmd, 3000);
#endif
    if (argc > 1 && strcmp(argv[argc - 1], "--cleanup") == 0) {
        for (i = 0; i < n; i++) {
            fw_format_delete(cmd, sizeof(cmd), &rules[i]);
            fw_show_plan(cmd, 2000);
        }
    }
    return 0;
}
