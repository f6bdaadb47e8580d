"""mem_profiler's version, as the package, the capture files' readers and the reports
give it."""

VERSION = "0.2.0"
