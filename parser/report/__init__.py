"""Reports out: each module renders what the model or the log analyses computed in one
format (text, dot, flame graph page, jeprof, JSON, pprof, leaks, notes, inefficient
device memory, the timeline SVG)."""
