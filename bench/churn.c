/* The churn workload of `make bench`: THREADS threads each make PAIRS
 * malloc/free pairs of sizes 16..4096 (uniform), keeping a ring of 1024 live
 * blocks per thread, through a few call levels like a real program.
 * usage: churn THREADS PAIRS
 * With CHURN_WAIT set it prints "ready", waits for a line on stdin (a sampler is
 * attached meanwhile) and prints the seconds the work took on stderr.  With
 * CHURN_SECONDS=S each thread works for S seconds whatever PAIRS says, or until a
 * SIGTERM, and the bytes the threads allocated go to stderr as "allocated N" (make
 * soak). */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RING 1024

static long pairs;
static struct timespec deadline;   /* CHURN_SECONDS: when the threads stop */
static volatile sig_atomic_t stopped;   /* or sooner: a SIGTERM came */
static long allocated[64];         /* bytes, by thread */

static void stop(int sig)
{
    (void)sig;
    stopped = 1;
}

static int past_deadline(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline.tv_sec ||
           (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec);
}

static inline uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

__attribute__((noinline)) static char *make_record(uint64_t *rng, long *bytes)
{
    size_t size = 16 + next_rand(rng) % (4096 - 16 + 1);
    *bytes += (long)size;
    char *p = malloc(size);
    p[0] = (char)size;
    return p;
}

__attribute__((noinline)) static char *handle_item(uint64_t *rng, long *bytes)
{
    return make_record(rng, bytes);
}

static void *worker(void *arg)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    char *ring[RING] = {0};
    long sum = 0, bytes = 0;
    for (long i = 0; i < pairs; i++) {
        int slot = (int)(i % RING);
        if (ring[slot] != NULL) {
            sum += ring[slot][0];
            free(ring[slot]);
        }
        ring[slot] = handle_item(&rng, &bytes);
        if (deadline.tv_sec != 0 && (i & 4095) == 0 && (stopped || past_deadline()))
            break;
    }
    for (int i = 0; i < RING; i++)
        free(ring[i]);
    allocated[(uintptr_t)arg - 1] = bytes;
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
    const char *seconds = getenv("CHURN_SECONDS");
    if (seconds != NULL) {
        deadline = t0;
        deadline.tv_sec += atol(seconds);
        pairs = INT64_MAX;
        signal(SIGTERM, stop);
    }
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
    if (seconds != NULL) {
        long bytes = 0;
        for (int t = 0; t < threads; t++)
            bytes += allocated[t];
        fprintf(stderr, "allocated %ld\n", bytes);
    }
    return 0;
}
