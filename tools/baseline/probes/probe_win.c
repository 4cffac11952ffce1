/* Baseline probe for MinGW-w64: DLL (DllMain / DllMainCRTStartup), GUI (WinMain) and thread
 * start-up paths, plus the printf family with __USE_MINGW_ANSI_STDIO. Never run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <process.h>
#include <windows.h>

volatile LONG probe_count;

static unsigned __stdcall probe_thread(void *arg) {
    InterlockedIncrement(&probe_count);
    Sleep(10);
    return (unsigned)(size_t)arg;
}

static DWORD WINAPI probe_thread2(LPVOID arg) { return (DWORD)(size_t)arg + 1; }

int probe_run(void) {
    char buf[128];
    HANDLE t = (HANDLE)_beginthreadex(NULL, 0, probe_thread, NULL, 0, NULL);
    HANDLE t2 = CreateThread(NULL, 0, probe_thread2, NULL, 0, NULL);
    if (t) { WaitForSingleObject(t, INFINITE); CloseHandle(t); }
    if (t2) { WaitForSingleObject(t2, INFINITE); CloseHandle(t2); }
    snprintf(buf, sizeof buf, "%lld %Lf %s %zu", (long long)GetTickCount(), (long double)1.5,
             "x", strlen(buf));
    return printf("%s\n", buf);
}

#ifdef PROBE_DLL
__declspec(dllexport) int probe_export(int x) { return x + probe_run(); }

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved) {
    (void)inst; (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) probe_count = 0;
    return TRUE;
}
#elif defined(PROBE_GUI)
int WINAPI WinMain(HINSTANCE inst, HINSTANCE prev, LPSTR cmd, int show) {
    (void)inst; (void)prev; (void)show;
    return MessageBoxA(NULL, cmd, "probe", MB_OK) + probe_run();
}
#else
int main(int argc, char **argv) {
    (void)argv;
    return probe_run() + argc;
}
#endif
