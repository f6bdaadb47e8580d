"""Loading the sampler into a process started without it (`mem_profiler -p PID --attach`):
`inject` chooses a thread at a safe point and makes it call dlopen, through the few
ptrace requests of `ptrace`. Imported by attaching alone: it loads the ELF reader."""
