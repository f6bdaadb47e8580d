/* A loaded object's file, read beside its mapping: its notes (the build-id, the Go
 * toolchain's mark), and its unwind tables.
 *
 * Reading .eh_frame and .eh_frame_hdr in place costs the process more resident
 * memory than the bytes it reads: the first touch of a page of a file mapping maps
 * the pages around it that the page cache holds (the kernel's fault-around, 64 KiB),
 * so the lookups of a few thousand code addresses leave a large library's whole
 * tables resident, pages the program itself never reads.  The tables of such an
 * object are read with pread from its file instead, where the bytes stay in the page
 * cache: a view holds the file's descriptor and every 64th entry of .eh_frame_hdr's
 * table, so that a lookup reads one block of the table, then its FDE and CIE.
 *
 * A view is made for tables of at least VIEW_MIN_ENTRIES entries (smaller ones would
 * keep little resident, and each rule read from a file costs a system call or two), of
 * a file whose build-id is the loaded object's, and its descriptor kept among the
 * highest the process may open (at most MAX_VIEWS of them): a program that counts on
 * getting the lowest free descriptor is not disturbed.  Before each use the
 * descriptor is checked (fstat) to be still the file: a program that closed it, maybe
 * opening another file under its number, leaves the tables read in place from then on,
 * and the number is never closed by us. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sysutil.h"
#include "unwind/eh_frame.h"
#include "unwind/object_file.h"

#define BUILD_ID_MAX 64
#define VIEW_MIN_ENTRIES 32768  /* a table of 256 KiB: megabytes of .eh_frame */
#define MAX_VIEWS 8
#define STEP 64                 /* entries per step of a view's index */
#define BUFFER_BYTES (STEP * 8) /* one step of the table in one read */
#define BUFFERS 32              /* blocks of the tables read lately: FDEs and CIEs recur */
#define FD_CEILING 1024         /* kept below it: select() takes no higher */

enum view_state { VIEW_EMPTY = 0, VIEW_FILE, VIEW_IN_PLACE };

struct memprof_eh_file {
    enum view_state state;
    uintptr_t base;              /* the object's load address: which object it is */
    unsigned long long subs;     /* the loader's unloads when last checked */
    int fd;
    dev_t dev;
    ino_t ino;
    uintptr_t lo;                /* the address at file_offset */
    uint64_t file_offset;
    uint32_t generation;         /* its buffers' tag */
    uint64_t count;              /* the table's entries */
    int32_t *index;              /* entry STEP * i's code address, relative to hdr */
    uint8_t build_id[BUILD_ID_MAX];
    size_t build_id_len;
};

/* Touched only inside dl_iterate_phdr's callback (object_file.h). */
static struct memprof_eh_file views[MAX_VIEWS];
static uint32_t generations;

struct buffer {
    uint32_t generation;         /* 0: empty */
    uint32_t len;
    uint64_t off;
    uint8_t bytes[BUFFER_BYTES];
};
static struct buffer buffers[BUFFERS];
static unsigned next_buffer, last_used;   /* a parse reads on in the block it is in */

/* ---- notes ------------------------------------------------------------------ */
const ElfW(Phdr) *memprof_object_segment(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && addr - (info->dlpi_addr + ph->p_vaddr) < ph->p_memsz)
            return ph;
    }
    return NULL;
}

const uint8_t *memprof_object_note(const struct dl_phdr_info *info, uint32_t type,
                                   const char *owner, uint32_t namesz, size_t *len,
                                   const ElfW(Phdr) **note)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE ||
            memprof_object_segment(info, info->dlpi_addr + ph->p_vaddr) == NULL)
            continue;
        const uint8_t *notes = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        for (ElfW(Word) at = 0; at + sizeof(ElfW(Nhdr)) <= ph->p_filesz;) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(notes + at);
            at += sizeof *n;
            ElfW(Word) name_room = (n->n_namesz + 3) & ~3u, desc_at = at + name_room;
            if (n->n_namesz == namesz && n->n_type == type && at + namesz <= ph->p_filesz &&
                memcmp(notes + at, owner, namesz) == 0 && desc_at <= ph->p_filesz &&
                n->n_descsz <= ph->p_filesz - desc_at) {
                *len = n->n_descsz;
                *note = ph;
                return notes + desc_at;
            }
            at = desc_at + ((n->n_descsz + 3) & ~3u);
        }
    }
    return NULL;
}

const uint8_t *memprof_object_build_id(const struct dl_phdr_info *info, size_t *len,
                                       const ElfW(Phdr) **note)
{
    return memprof_object_note(info, NT_GNU_BUILD_ID, "GNU", 4, len, note);
}

/* ---- reading the file --------------------------------------------------------- */
static ssize_t read_at(int fd, void *out, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)out + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

bool memprof_eh_file_read(struct memprof_eh_file *f, uintptr_t addr, void *out, size_t n)
{
    if (addr < f->lo || n > BUFFER_BYTES)
        return false;
    uint64_t off = f->file_offset + (addr - f->lo);
    for (unsigned i = 0; i <= BUFFERS; i++) {
        const struct buffer *b = &buffers[i == 0 ? last_used : i - 1];
        if (b->generation == f->generation && off >= b->off && off - b->off <= b->len &&
            b->len - (off - b->off) >= n) {
            last_used = i == 0 ? last_used : i - 1;
            memcpy(out, b->bytes + (off - b->off), n);
            return true;
        }
    }
    last_used = next_buffer++ % BUFFERS;
    struct buffer *b = &buffers[last_used];
    b->generation = 0;
    ssize_t got = read_at(f->fd, b->bytes, BUFFER_BYTES, off);
    if (got < (ssize_t)n)
        return false;
    b->off = off;
    b->len = (uint32_t)got;
    b->generation = f->generation;
    memcpy(out, b->bytes, n);
    return true;
}

static size_t index_len(const struct memprof_eh_file *f)
{
    return (f->count + STEP - 1) / STEP;
}

void memprof_eh_file_narrow(struct memprof_eh_file *f, uintptr_t table, int64_t target,
                            uint64_t *below, uint64_t *above)
{
    if (f->index[0] > target) {   /* entry 0 starts above it: no FDE */
        *below = 0;
        *above = 1;
        return;
    }
    size_t lo = 0, hi = index_len(f);   /* the last step starting at or below target */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->index[mid] <= target)
            lo = mid;
        else
            hi = mid;
    }
    *below = lo * STEP;
    *above = *below + STEP < f->count ? *below + STEP : f->count;
    int32_t first;
    memprof_eh_file_read(f, table + 8 * *below, &first, sizeof first);   /* fills a buffer */
}

/* ---- views -------------------------------------------------------------------- */
static struct memprof_eh_file *free_view(void)
{
    for (int i = 0; i < MAX_VIEWS; i++)
        if (views[i].state == VIEW_EMPTY)
            return &views[i];
    return NULL;
}

static bool still_the_file(const struct memprof_eh_file *f)
{
    struct stat st;
    return fstat(f->fd, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino;
}

struct memprof_eh_file *memprof_eh_file_open(int fd, uintptr_t lo, uint64_t file_offset,
                                             const struct eh_tables *t)
{
    struct memprof_eh_file *f = free_view();
    struct stat st;
    uintptr_t table;
    uint64_t count;
    if (f == NULL || fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    /* VIEW_FILE only once whole: a forked child may find it half made */
    *f = (struct memprof_eh_file){.state = VIEW_EMPTY, .fd = fd, .dev = st.st_dev,
                                  .ino = st.st_ino, .lo = lo, .file_offset = file_offset,
                                  .generation = ++generations};
    struct eh_tables through_file = {t->hdr, t->lo, t->hi, f};
    bool whole = memprof_eh_frame_table(&through_file, &table, &count) && count > 0;
    if (whole) {
        f->count = count;
        f->index = memprof_map(sizeof(*f->index) * index_len(f));
        whole = f->index != NULL;
    }
    for (size_t i = 0; whole && i < index_len(f); i++)
        whole = memprof_eh_file_read(f, table + 8 * STEP * i, &f->index[i], sizeof *f->index);
    if (whole) {
        f->state = VIEW_FILE;
        return f;
    }
    close(fd);
    memprof_eh_file_forget(f);
    return NULL;
}

/* The view's index given back, and its slot left `state`, for the same object. */
static void drop(struct memprof_eh_file *f, enum view_state state)
{
    if (f->index != NULL)
        memprof_unmap(f->index, sizeof(*f->index) * index_len(f));
    *f = (struct memprof_eh_file){.state = state, .base = f->base, .subs = f->subs};
}

void memprof_eh_file_forget(struct memprof_eh_file *f)
{
    if (f->state == VIEW_FILE && still_the_file(f))
        close(f->fd);
    drop(f, VIEW_EMPTY);
}

/* The object's file opened read-only at one of the highest descriptors, or -1. */
static int open_high(const char *path)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return -1;
    rlim_t ceiling = limit.rlim_cur < FD_CEILING ? limit.rlim_cur : FD_CEILING;
    if (ceiling < 3 + 2 * MAX_VIEWS)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int high = fd >= (int)(ceiling - 2 * MAX_VIEWS)
                   ? fd
                   : fcntl(fd, F_DUPFD_CLOEXEC, (int)(ceiling - 2 * MAX_VIEWS));
    if (high != fd)
        close(fd);
    return high;
}

/* Whether the file open at fd is the object's build: its build-id note at the same
 * place. */
static bool same_build(int fd, const struct dl_phdr_info *info, const uint8_t *id, size_t len,
                       const ElfW(Phdr) *note)
{
    uint8_t file_id[BUILD_ID_MAX];
    uint64_t off = note->p_offset + ((uintptr_t)id - (info->dlpi_addr + note->p_vaddr));
    return read_at(fd, file_id, len, off) == (ssize_t)len && memcmp(file_id, id, len) == 0;
}

/* A view of the object's tables, or a slot that says to read them in place (a file
 * that cannot be opened, or is not the object's), so as not to try at each lookup;
 * NULL, and nothing kept, for tables too small to be worth a view. */
static struct memprof_eh_file *make_view(const struct dl_phdr_info *info,
                                         unsigned long long subs, const ElfW(Phdr) *seg,
                                         uintptr_t hdr)
{
    struct memprof_eh_file *slot = free_view();
    uintptr_t lo = info->dlpi_addr + seg->p_vaddr, table;
    struct eh_tables t = {hdr, lo, lo + seg->p_filesz, NULL};
    uint64_t count;
    if (slot == NULL || !memprof_eh_frame_table(&t, &table, &count) || count < VIEW_MIN_ENTRIES)
        return NULL;
    size_t len;
    const ElfW(Phdr) *note;
    const uint8_t *id = memprof_object_build_id(info, &len, &note);
    struct memprof_eh_file *f = NULL;
    if (id != NULL && len > 0 && len <= BUILD_ID_MAX) {
        char exe[MEMPROF_PROC_PATH];
        int fd = open_high(info->dlpi_name[0] ? info->dlpi_name : memprof_proc_file("exe", exe));
        if (fd >= 0 && same_build(fd, info, id, len, note))
            f = memprof_eh_file_open(fd, lo, seg->p_offset, &t);
        else if (fd >= 0)
            close(fd);
    }
    if (f == NULL) {
        f = slot;
        f->state = VIEW_IN_PLACE;
    } else {
        memcpy(f->build_id, id, len);
        f->build_id_len = len;
    }
    f->base = info->dlpi_addr;
    f->subs = subs;
    return f;
}

/* Whether the view's object is still the one loaded at its address: nothing was
 * unloaded since, or the object there has its build-id. */
static bool same_object(struct memprof_eh_file *f, const struct dl_phdr_info *info,
                        unsigned long long subs)
{
    if (f->subs == subs)
        return true;
    size_t len;
    const ElfW(Phdr) *note;
    const uint8_t *id = memprof_object_build_id(info, &len, &note);
    if (f->state != VIEW_FILE || id == NULL || len != f->build_id_len ||
        memcmp(id, f->build_id, len) != 0)
        return false;
    f->subs = subs;
    return true;
}

struct memprof_eh_file *memprof_eh_file_of(const struct dl_phdr_info *info,
                                           unsigned long long subs, const ElfW(Phdr) *seg,
                                           uintptr_t hdr)
{
    struct memprof_eh_file *f = NULL;
    for (int i = 0; i < MAX_VIEWS && f == NULL; i++)
        if (views[i].state != VIEW_EMPTY && views[i].base == info->dlpi_addr)
            f = &views[i];
    if (f != NULL && !same_object(f, info, subs)) {
        memprof_eh_file_forget(f);
        f = NULL;
    }
    if (f == NULL)
        f = make_view(info, subs, seg, hdr);
    else if (f->state == VIEW_FILE && !still_the_file(f))
        drop(f, VIEW_IN_PLACE);   /* its number is not ours now: read in place from here on */
    return f != NULL && f->state == VIEW_FILE ? f : NULL;
}
