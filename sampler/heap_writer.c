/* The .heap writer: jemalloc heap_v2 with `#` extension lines, so jeprof
 * reads our files unchanged (layout in DESIGN.md §2).  Written through raw
 * system calls into an mmap'd buffer, to a temporary name in the target
 * folder, then renamed into place: a reader never sees half a file. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "memprof.h"
#include "memprof_internal.h"

#define BUF_CAP (1u << 20)

struct out {
    int fd;
    char *buf;
    size_t len;
    bool failed;
};

static void flush(struct out *o)
{
    size_t done = 0;
    while (done < o->len && !o->failed) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            o->failed = true;
        else
            done += (size_t)n;
    }
    o->len = 0;
}

static void put(struct out *o, const char *s, size_t n)
{
    while (n > 0) {
        if (o->len == BUF_CAP)
            flush(o);
        size_t room = BUF_CAP - o->len;
        size_t k = n < room ? n : room;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put(o, tmp, (size_t)n);
}

static void put_hex(struct out *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "0x%llx", (unsigned long long)v);
    put(o, tmp, (size_t)n);
}

static void put_counters(struct out *o, uint64_t cur_objs, uint64_t cur_bytes,
                         uint64_t acc_objs, uint64_t acc_bytes)
{
    puts_(o, "  t*: ");
    put_u64(o, cur_objs);
    puts_(o, ": ");
    put_u64(o, cur_bytes);
    puts_(o, " [");
    put_u64(o, acc_objs);
    puts_(o, ": ");
    put_u64(o, acc_bytes);
    puts_(o, "]\n");
}

/* Copies a whole file (a /proc entry) into the output. */
static void put_file(struct out *o, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char tmp[4096];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof tmp)) != 0) {
        if (n > 0)
            put(o, tmp, (size_t)n);
        else if (errno != EINTR)
            break;
    }
    close(fd);
}

/* The command line, arguments joined by spaces (its first 4 KiB). */
static void put_cmdline(struct out *o)
{
    char args[4096];
    ssize_t n = 0;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, args, sizeof args);
        close(fd);
    }
    while (n > 0 && (args[n - 1] == '\0' || args[n - 1] == '\n'))
        n--;
    for (ssize_t i = 0; i < n; i++)
        if (args[i] == '\0' || args[i] == '\n')
            args[i] = ' ';
    if (n > 0)
        put(o, args, (size_t)n);
}

/* ---- build ids of the loaded ELF objects --------------------------------- */
struct build_id_ctx {
    struct out *o;
    const char *exe;
};

static const unsigned char *find_build_id(struct dl_phdr_info *info, size_t *len)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const unsigned char *name = p + sizeof(*nh);
            const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                *len = nh->n_descsz;
                return desc;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return NULL;
}

static int put_build_id(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct build_id_ctx *ctx = arg;
    const char *path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : ctx->exe;
    size_t len;
    const unsigned char *id = find_build_id(info, &len);
    if (id == NULL || path[0] != '/')
        return 0;   /* the vDSO and objects without a build id */
    static const char hex[] = "0123456789abcdef";
    char text[2 * 64 + 1];
    size_t n = len < 64 ? len : 64;
    for (size_t i = 0; i < n; i++) {
        text[2 * i] = hex[id[i] >> 4];
        text[2 * i + 1] = hex[id[i] & 15];
    }
    puts_(ctx->o, "# build_id: ");
    puts_(ctx->o, path);
    puts_(ctx->o, " ");
    put(ctx->o, text, 2 * n);
    puts_(ctx->o, "\n");
    return 0;
}

/* ---- the profile ---------------------------------------------------------- */
struct live_counts {
    uint64_t *objs_bytes;   /* two words per stack id */
    uint32_t nstacks;
};

static void add_live(uint32_t stack, uint64_t size, void *arg)
{
    struct live_counts *c = arg;
    if (stack < c->nstacks) {
        c->objs_bytes[2 * (size_t)stack] += 1;
        c->objs_bytes[2 * (size_t)stack + 1] += size;
    }
}

static void put_profile(struct out *o, const struct memprof_window_info *w, const char *exe)
{
    uint32_t nstacks = memprof_stack_ids();
    size_t words = 2 * (size_t)nstacks + 2;
    uint64_t *acc = memprof_map(sizeof(uint64_t) * words);
    struct live_counts cur = {memprof_map(sizeof(uint64_t) * words), nstacks};
    if (acc == NULL || cur.objs_bytes == NULL) {
        o->failed = true;
        goto out;
    }
    memprof_stack_counts_sum(acc, nstacks, w->id);
    memprof_live_foreach(add_live, &cur);

    uint64_t acc_objs = 0, acc_bytes = 0, cur_objs = 0, cur_bytes = 0;
    for (size_t i = 0; i < nstacks; i++) {
        acc_objs += acc[2 * i];
        acc_bytes += acc[2 * i + 1];
        cur_objs += cur.objs_bytes[2 * i];
        cur_bytes += cur.objs_bytes[2 * i + 1];
    }

    puts_(o, "heap_v2/");
    put_u64(o, w->rate);
    puts_(o, "\n# mem_profiler " MEMPROF_VERSION "\n# pid: ");
    put_u64(o, (uint64_t)getpid());
    puts_(o, "\n# cmdline: ");
    put_cmdline(o);
    puts_(o, "\n# exe: ");
    puts_(o, exe);
    puts_(o, "\n# heap: ");
    puts_(o, w->heap);
    puts_(o, "\n# window_start_ns: ");
    put_u64(o, w->start_ns);
    puts_(o, "\n# window_end_ns: ");
    put_u64(o, w->end_ns);
    puts_(o, "\n# unwinder: ");
    puts_(o, memprof_unwinder_name());
    puts_(o, "\n# max_depth: ");
    put_u64(o, (uint64_t)w->max_depth);
    puts_(o, "\n# dropped_samples: ");
    put_u64(o, atomic_load(&memprof_dropped_samples));
    puts_(o, "\n");
    struct build_id_ctx ctx = {o, exe};
    dl_iterate_phdr(put_build_id, &ctx);
    put_counters(o, cur_objs, cur_bytes, acc_objs, acc_bytes);

    for (uint32_t id = 0; id < nstacks; id++) {
        uint64_t co = cur.objs_bytes[2 * (size_t)id], cb = cur.objs_bytes[2 * (size_t)id + 1];
        uint64_t ao = acc[2 * (size_t)id], ab = acc[2 * (size_t)id + 1];
        if (ao == 0 && co == 0)
            continue;   /* a stack of an earlier window */
        const uintptr_t *frames;
        int depth;
        memprof_stack_frames(id, &frames, &depth);
        puts_(o, "@");
        for (int i = 0; i < depth; i++) {
            puts_(o, " ");
            put_hex(o, frames[i]);
        }
        puts_(o, "\n");
        put_counters(o, co, cb, ao, ab);
    }

    puts_(o, "\nMAPPED_LIBRARIES:\n");
    put_file(o, "/proc/self/maps");
out:
    memprof_unmap(acc, sizeof(uint64_t) * words);
    memprof_unmap(cur.objs_bytes, sizeof(uint64_t) * words);
}

int memprof_write_heap(const struct memprof_window_info *w, const char *prefix,
                       unsigned seq, char *path_out, size_t path_len)
{
    char path[MEMPROF_PATH_MAX], tmp[MEMPROF_PATH_MAX + 8], exe[MEMPROF_PATH_MAX];
    bool host = strcmp(w->heap, "host") == 0;
    int n = snprintf(path, sizeof path, "%s%d.%04u%s%s.heap", prefix, (int)getpid(), seq,
                     host ? "" : ".", host ? "" : w->heap);
    if (n < 0 || (size_t)n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ssize_t elen = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[elen > 0 ? elen : 0] = '\0';

    struct out o = {.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (o.fd < 0)
        return -1;
    o.buf = memprof_map(BUF_CAP);
    if (o.buf == NULL) {
        close(o.fd);
        unlink(tmp);
        return -1;
    }
    put_profile(&o, w, exe);
    flush(&o);
    memprof_unmap(o.buf, BUF_CAP);
    int saved = errno;
    if (close(o.fd) != 0)
        o.failed = true;
    if (o.failed || rename(tmp, path) != 0) {
        unlink(tmp);
        errno = saved ? saved : EIO;
        return -1;
    }
    if (path_out != NULL && path_len > 0)
        snprintf(path_out, path_len, "%s", path);
    return 0;
}
