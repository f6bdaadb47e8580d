/* The churn workload of `make bench`: THREADS threads each make PAIRS
 * malloc/free pairs of sizes 16..4096 (uniform), keeping a ring of 1024 live
 * blocks per thread, through a few call levels like a real program.
 * usage: churn THREADS PAIRS
 * With CHURN_WAIT set it prints "ready", waits for a line on stdin (a sampler is
 * attached meanwhile) and prints the seconds the work took on stderr. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RING 1024

static long pairs;

static inline uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

__attribute__((noinline)) static char *make_record(uint64_t *rng)
{
    size_t size = 16 + next_rand(rng) % (4096 - 16 + 1);
    char *p = malloc(size);
    p[0] = (char)size;
    return p;
}

__attribute__((noinline)) static char *handle_item(uint64_t *rng)
{
    return make_record(rng);
}

static void *worker(void *arg)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    char *ring[RING] = {0};
    long sum = 0;
    for (long i = 0; i < pairs; i++) {
        int slot = (int)(i % RING);
        if (ring[slot] != NULL) {
            sum += ring[slot][0];
            free(ring[slot]);
        }
        ring[slot] = handle_item(&rng);
    }
    for (int i = 0; i < RING; i++)
        free(ring[i]);
    return (void *)sum;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int threads = atoi(argv[1]);
    pairs = atol(argv[2]);
    pthread_t tids[64];
    if (threads < 1 || threads > 64)
        return 2;
    if (getenv("CHURN_WAIT")) {
        char line[16];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long t = 0; t < threads; t++)
        pthread_create(&tids[t], NULL, worker, (void *)(t + 1));
    long total = 0;
    for (int t = 0; t < threads; t++) {
        void *r;
        pthread_join(tids[t], &r);
        total += (long)r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%ld\n", total);
    if (getenv("CHURN_WAIT"))
        fprintf(stderr, "%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
