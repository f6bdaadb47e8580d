"""The .heap pipeline: read -> symbolize -> aggregate -> render.

    from mem_profiler.parser.heapfile import read_heap
    from mem_profiler.parser.symbolize import symbolize
    from mem_profiler.parser.aggregate import aggregate
    from mem_profiler.parser.report_text import format_text

    sym = symbolize(read_heap("app_4242.0001.heap"), "./app")
    print(format_text(aggregate(sym, "inuse_space")), end="")

Errors a user can cause derive from mem_profiler.parser.errors.UserError.
"""
