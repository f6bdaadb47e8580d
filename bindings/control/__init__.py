"""The doors into the sampler, as sampler/control/ is the sampler's side of them:
locating the library (`sampler_lib`) and launching a program under it (`launch`), the
control block (`control_block`) and the controller that sends it requests
(`controller`), the ptrace injection into a running process (`attach`), what /proc says
of a process (`procfs`), and the settings a capture takes when given none
(`defaults`). They import the core alone: neither numpy nor the parser."""
