/* The calling-context tree (sampler/tables/frame_tree.c) with its hash indexes: chains that
 * share their root end share nodes, a chain reads back as it went in (recursion 500
 * deep included), a thread's memo gives the same nodes as a lookup, a chain seen
 * before is found by its leaf and a sibling of the same hash's high half is not, a full tree
 * refuses, a reset empties it, and threads interning the same chains agree. */
#include <string.h>

#include "base/thread_state.h"
#include "tables/frame_tree.h"
#include "unit.h"

__thread struct memprof_thread memprof_thread;   /* sample.c's, whose memos the tree reads */

#define HEAD (MEMPROF_HEAD_BASE | 7)

static uint32_t intern(struct memprof_chain_memos *memo, uintptr_t head, const uintptr_t *frames,
                       int n)
{
    struct memprof_chain chain;
    memprof_chain_hash(&chain, head, frames, n);
    return memprof_chain_intern(memo, &chain);
}

/* The frames from the leaf up to the chain's head, into out (leaf first); how many. */
static int read_chain(uint32_t leaf, uintptr_t *out, int cap, uintptr_t *head)
{
    int n = 0;
    for (uint32_t id = leaf;;) {
        struct memprof_node node = memprof_tree_node(id);
        CHECK(node.parent < id);
        if (node.parent == 0) {
            *head = memprof_tree_frame(node.frame);
            return n;
        }
        CHECK(n < cap);
        out[n++] = memprof_tree_frame(node.frame);
        id = node.parent;
    }
}

static void check_round_trip(uint32_t leaf, const uintptr_t *frames, int n)
{
    uintptr_t back[2048], head = 0;
    CHECK_EQ(read_chain(leaf, back, 2048, &head), n);
    CHECK_EQ(head, HEAD);
    CHECK(memcmp(back, frames, sizeof *frames * (size_t)n) == 0);
}

static void test_chains_share_their_root_end(void)
{
    CHECK_EQ(memprof_tree_init(1000), 0);   /* each test makes a tree of its own */
    uintptr_t a[] = {0x13, 0x12, 0x11}, b[] = {0x14, 0x12, 0x11}, c[] = {0x12, 0x11};
    uint32_t la = intern(NULL, HEAD, a, 3);
    uint32_t lb = intern(NULL, HEAD, b, 3);
    uint32_t lc = intern(NULL, HEAD, c, 2);
    CHECK_EQ(memprof_tree_nodes(), 1 + 5);   /* the root, the head, 0x11, 0x12, 0x13, 0x14 */
    CHECK_EQ(memprof_tree_frames(), 5);
    CHECK_EQ(memprof_tree_node(la).parent, lc);
    CHECK_EQ(memprof_tree_node(lb).parent, lc);
    CHECK_EQ(intern(NULL, HEAD, a, 3), la);
    check_round_trip(la, a, 3);
    check_round_trip(lb, b, 3);
    uint32_t other_head = intern(NULL, HEAD + 1, c, 2);
    CHECK(other_head != lc);   /* another head, another chain */
    CHECK_EQ(intern(NULL, HEAD, NULL, 0), memprof_tree_node(memprof_tree_node(lc).parent).parent);
    memprof_tree_reset();
}

/* 500 calls of one function, beyond what a memo holds: 500 nodes of one frame. */
static void test_deep_recursion_reads_back(void)
{
    CHECK_EQ(memprof_tree_init(1000), 0);
    uintptr_t frames[501];
    for (int i = 0; i < 500; i++)
        frames[i] = 0x4000;
    frames[500] = 0x5000;
    struct memprof_chain_memos memo = {0};
    uint32_t leaf = intern(&memo, HEAD, frames, 501);
    CHECK(leaf != NODE_NONE);
    CHECK_EQ(memprof_tree_nodes(), 1 + 1 + 501);
    CHECK_EQ(memprof_tree_frames(), 3);
    check_round_trip(leaf, frames, 501);
    CHECK_EQ(intern(NULL, HEAD, frames, 501), leaf);
    memprof_tree_reset();
}

/* Random chains from a few frames, through the memos and without: the same leaves. */
static void test_a_memo_gives_the_nodes_a_lookup_gives(void)
{
    CHECK_EQ(memprof_tree_init(1u << 20), 0);
    struct memprof_chain_memos memo = {0};
    uint64_t state = 7;
    for (int round = 0; round < 5000; round++) {
        uintptr_t frames[40];
        int n = (int)(next_random(&state) % 40);
        for (int i = 0; i < n; i++)   /* a root end that repeats, a leaf end that varies */
            frames[i] = i >= n - 20 ? 0x100 + (uintptr_t)(n - i) : 0x200 + next_random(&state) % 4;
        uint32_t by_memo = intern(&memo, HEAD, frames, n);
        CHECK_EQ(intern(NULL, HEAD, frames, n), by_memo);
        check_round_trip(by_memo, frames, n);
    }
    memprof_tree_reset();
}

/* A chain seen before is found by its leaf's whole-path hash, with no node made:
 * 300,000 chains whose frames differ by a few bytes (as a program's return
 * addresses do), found again out of order, each at its own leaf. */
#define NEAR_CHAINS 300000
static int near_chain(uint32_t k, uintptr_t *frames)
{
    int n = 0;
    for (uint32_t rest = k; rest != 0 || n == 0; rest /= 16, n++)   /* leaf first */
        frames[n] = 0x401000 + (uintptr_t)(rest % 16) * 8;
    for (int i = 0; i < 20; i++)   /* a root end every chain shares */
        frames[n++] = 0x402000 + (uintptr_t)i * 4;
    return n;
}

static void test_a_chain_is_found_again_by_its_leaf(void)
{
    CHECK_EQ(memprof_tree_init(1u << 22), 0);
    static uint32_t leaf[NEAR_CHAINS];
    uintptr_t frames[64];
    for (uint32_t k = 0; k < NEAR_CHAINS; k++)
        leaf[k] = intern(NULL, HEAD, frames, near_chain(k, frames));
    uint32_t nodes = memprof_tree_nodes();
    struct memprof_chain_memos memo = {0};
    for (uint32_t i = 0; i < NEAR_CHAINS; i++) {
        uint32_t k = (uint32_t)((uint64_t)i * 7919 % NEAR_CHAINS);
        int n = near_chain(k, frames);
        CHECK_EQ(intern(&memo, HEAD, frames, n), leaf[k]);
        check_round_trip(leaf[k], frames, n);
    }
    CHECK_EQ(memprof_tree_nodes(), nodes);
    memprof_tree_reset();
}

/* The frame whose path under a parent of path `parent` hashes to `path`: frame_tree.c's
 * path_hash undone (its multiplier is odd, so it has an inverse modulo 2^64). */
static uintptr_t frame_for_path(uint64_t parent, uint64_t path)
{
    const uint64_t k = 0xff51afd7ed558ccdull;
    uint64_t inverse = k;
    for (int i = 0; i < 5; i++)   /* Newton's steps, each doubling the bits that hold */
        inverse *= 2 - k * inverse;
    return (path * inverse - 0x632be59bd9b4e019ull) ^ (parent << 27 | parent >> 37);
}

/* A leaf is found by the high half of its path's hash, its parent's and its frame:
 * a sibling whose path agrees with it in the high half (where the index places it)
 * is a node of its own. */
static void test_a_sibling_of_the_same_high_half_is_a_node_of_its_own(void)
{
    CHECK_EQ(memprof_tree_init(1000), 0);
    uintptr_t a[] = {0x13, 0x12, 0x11}, b[3];
    struct memprof_chain chain;
    memprof_chain_hash(&chain, HEAD, a, 3);
    uint64_t near = chain.leaf_path ^ 0x100;   /* the same high half */
    memcpy(b, a, sizeof a);
    b[0] = frame_for_path(chain.parent_path, near);
    struct memprof_chain other;
    memprof_chain_hash(&other, HEAD, b, 3);
    CHECK_EQ(other.leaf_path, near);   /* the inverse is path_hash's */
    uint32_t la = memprof_chain_intern(NULL, &chain);
    uint32_t lb = memprof_chain_intern(NULL, &other);
    CHECK(la != lb);
    CHECK_EQ(memprof_tree_node(la).parent, memprof_tree_node(lb).parent);
    check_round_trip(lb, b, 3);
    CHECK_EQ(memprof_chain_intern(NULL, &chain), la);
    CHECK_EQ(memprof_chain_intern(NULL, &other), lb);
    memprof_tree_reset();
}

static void test_a_full_tree_refuses_and_a_reset_empties_it(void)
{
    CHECK_EQ(memprof_tree_init(1000), 0);
    uintptr_t frames[2000];
    for (int i = 0; i < 2000; i++)
        frames[i] = 0x1000 + (uintptr_t)i;
    struct memprof_chain_memos memo = {0};
    CHECK_EQ(intern(&memo, HEAD, frames, 2000), NODE_NONE);   /* 1,000 nodes */
    CHECK_EQ(memprof_tree_nodes(), 1001);
    uint32_t leaf = intern(&memo, HEAD, frames + 1100, 900);
    CHECK(leaf != NODE_NONE);   /* all there already: the root end of the longer chain */
    check_round_trip(leaf, frames + 1100, 900);
    struct memprof_memos *memos = calloc(1, sizeof *memos);
    memprof_thread.memos = memos;   /* its frame ids, like the chain memo, of the old tree */
    CHECK(intern(&memo, HEAD, frames + 1990, 10) != NODE_NONE);
    uint32_t generation = memprof_tree_generation();
    memprof_tree_reset();
    CHECK(memprof_tree_generation() != generation);
    CHECK_EQ(memprof_tree_nodes(), 1);
    CHECK_EQ(memprof_tree_frames(), 0);
    /* the memo is of the old tree: not trusted */
    leaf = intern(&memo, HEAD, frames + 1990, 10);
    CHECK_EQ(memprof_tree_nodes(), 1 + 11);
    CHECK_EQ(memprof_tree_frames(), 11);
    check_round_trip(leaf, frames + 1990, 10);
    memprof_thread.memos = NULL;
    free(memos);
    memprof_tree_reset();
}

/* Threads intern the same 2,000 chains, each in its own order and with its own memo
 * (half of them with memos of frame ids too), while the indexes grow under them: one
 * leaf per chain, the same in every thread. */
#define THREADS 4
#define CHAINS 2000
static uint32_t leaves[THREADS][CHAINS];

static int chain_of(uint32_t k, uintptr_t *frames)
{
    int n = 5 + (int)(k % 23);
    for (int i = 0; i < n; i++)
        frames[i] = 0x9000 + (uintptr_t)((k >> (i % 11)) & 7) * 16 + (uintptr_t)i;
    return n;
}

static void intern_all(uint32_t index)
{
    struct memprof_memos *memos = calloc(1, sizeof *memos);   /* frame ids by address */
    if (index % 2 == 0)
        memprof_thread.memos = memos;
    struct memprof_chain_memos memo = {0};
    uint64_t state = index + 1;
    for (uint32_t i = 0; i < CHAINS; i++) {
        uint32_t k = (uint32_t)(index & 1 ? CHAINS - 1 - i : (i * 7919 + index) % CHAINS);
        if (next_random(&state) % 8 == 0)
            memset(&memo, 0, sizeof memo);
        uintptr_t frames[40];
        int n = chain_of(k, frames);
        leaves[index][k] = intern(&memo, HEAD, frames, n);
    }
    memprof_thread.memos = NULL;
    free(memos);
}

static void test_threads_agree_on_every_node(void)
{
    CHECK_EQ(memprof_tree_init(1u << 20), 0);
    run_threads(THREADS, intern_all);
    for (uint32_t k = 0; k < CHAINS; k++) {
        uintptr_t frames[40];
        int n = chain_of(k, frames);
        for (int t = 1; t < THREADS; t++)
            CHECK_EQ(leaves[t][k], leaves[0][k]);
        check_round_trip(leaves[0][k], frames, n);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    RUN(test_chains_share_their_root_end);
    RUN(test_deep_recursion_reads_back);
    RUN(test_a_memo_gives_the_nodes_a_lookup_gives);
    RUN(test_a_chain_is_found_again_by_its_leaf);
    RUN(test_a_sibling_of_the_same_high_half_is_a_node_of_its_own);
    RUN(test_a_full_tree_refuses_and_a_reset_empties_it);
    RUN(test_threads_agree_on_every_node);
    return 0;
}
