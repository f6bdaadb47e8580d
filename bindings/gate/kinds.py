"""The kinds of budget: the keys of a budget file and the gate's options by one name
each, apart from the budgets' model so that the command line declares its options
without importing it."""

PEAK, LIVE_AT_EXIT, LEAK_PER_STACK, TOTAL_ALLOC, GROWTH, CATEGORY = (
    "max-peak",
    "max-live-at-exit",
    "max-leak-per-stack",
    "max-total-alloc",
    "max-growth-vs",
    "max-category",
)
SIZE_KINDS = (PEAK, LIVE_AT_EXIT, LEAK_PER_STACK, TOTAL_ALLOC)
KINDS = (*SIZE_KINDS, GROWTH, CATEGORY)
