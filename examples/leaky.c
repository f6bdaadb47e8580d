/* The bundled example for `make demo`: a program with three allocation sites.
 *   load_config    keeps  N x 64 KiB        (long-lived)
 *   cache_insert   keeps  N x 16 x 1 KiB    (grows, never freed: a leak)
 *   handle_request allocates and frees 4 x 256 KiB per call (transient)
 * N is the first argument (default 100). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *config_blocks[4096];
static void *cache[65536];

__attribute__((noinline)) static void load_config(int i)
{
    config_blocks[i] = malloc(64 * 1024);
    memset(config_blocks[i], 1, 64 * 1024);
}

__attribute__((noinline)) static void cache_insert(int i)
{
    for (int k = 0; k < 16; k++) {
        cache[i * 16 + k] = malloc(1024);
        memset(cache[i * 16 + k], 2, 1024);
    }
}

__attribute__((noinline)) static long handle_request(int i)
{
    long sum = 0;
    for (int k = 0; k < 4; k++) {
        char *buf = malloc(256 * 1024);
        memset(buf, i + k, 256 * 1024);
        sum += buf[k];
        free(buf);
    }
    return sum;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (n < 1 || n > 4096) {
        fprintf(stderr, "usage: leaky [N between 1 and 4096]\n");
        return 2;
    }
    long sum = 0;
    for (int i = 0; i < n; i++) {
        load_config(i);
        cache_insert(i);
        sum += handle_request(i);
    }
    for (int i = 0; i < n; i++)   /* read what we keep, so none of it is optimised away */
        sum += ((char *)config_blocks[i])[i] + ((char *)cache[i * 16])[0];
    printf("leaky: %d rounds, checksum %ld\n", n, sum);
    return 0;
}
