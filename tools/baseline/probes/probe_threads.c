/* Baseline probe for ELF: pthreads and C11 atomics next to the libc probe. Never run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int probe_value;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

static void *probe_worker(void *arg) {
    pthread_mutex_lock(&probe_lock);
    probe_value += (int)(size_t)arg;
    pthread_mutex_unlock(&probe_lock);
    return NULL;
}

int main(int argc, char **argv) {
    (void)argv;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, probe_worker, (void *)(size_t)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("%d %d\n", probe_value, argc);
    return 0;
}
