/* A spin lock of the sampler's own, for its tables (hash_index.c, live_table.c).
 * Held only inside the sampler, for a few hundred instructions, by a thread whose
 * busy flag keeps its signal handlers out: never one an allocating thread can
 * already hold. */
#ifndef MEMPROF_SPIN_LOCK_H
#define MEMPROF_SPIN_LOCK_H

#include <sched.h>
#include <stdatomic.h>

static inline void memprof_spin_lock(_Atomic int *lock)
{
    for (int spins = 0;; spins++) {
        if (atomic_load_explicit(lock, memory_order_relaxed) == 0 &&
            !atomic_exchange_explicit(lock, 1, memory_order_acquire))
            return;
        if (spins > 64)
            sched_yield();
    }
}

static inline void memprof_spin_unlock(_Atomic int *lock)
{
    atomic_store_explicit(lock, 0, memory_order_release);
}

#endif
