/* What the C unit tests share: checks that say where they failed and stop the test,
 * a repeatable random sequence, threads started together, and the line each test
 * prints when it passed. */
#ifndef UNIT_H
#define UNIT_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline void check_failed(const char *file, int line, const char *what,
                                unsigned long long a, unsigned long long b)
{
    fprintf(stderr, "%s:%d: check failed: %s (%llu, %llu)\n", file, line, what, a, b);
    abort();
}

#define CHECK(cond) \
    ((cond) ? (void)0 : check_failed(__FILE__, __LINE__, #cond, 0, 0))
#define CHECK_EQ(a, b)                                                                      \
    do {                                                                                    \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);      \
        if (a_ != b_)                                                                       \
            check_failed(__FILE__, __LINE__, #a " == " #b, a_, b_);                         \
    } while (0)

/* xorshift64*: the same sequence on every run, so that a failure repeats. */
static inline uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

struct unit_thread {
    void (*fn)(uint32_t index);
    uint32_t index;
    pthread_barrier_t *ready;
};

static inline void *unit_thread_main(void *arg)
{
    struct unit_thread *u = arg;
    pthread_barrier_wait(u->ready);
    u->fn(u->index);
    return NULL;
}

/* Runs fn(0), ..., fn(n - 1) in n threads, released together once all are started. */
static inline void run_threads(uint32_t n, void (*fn)(uint32_t index))
{
    struct unit_thread units[n];
    pthread_t threads[n];
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, n);
    for (uint32_t i = 0; i < n; i++) {
        units[i] = (struct unit_thread){fn, i, &ready};
        CHECK_EQ(pthread_create(&threads[i], NULL, unit_thread_main, &units[i]), 0);
    }
    for (uint32_t i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&ready);
}

#define RUN(test)                   \
    do {                            \
        test();                     \
        printf("ok %s\n", #test);   \
    } while (0)

#endif
