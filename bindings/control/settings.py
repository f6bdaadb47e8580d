"""One capture's settings, whichever door takes them: a program launched under the
sampler (launch), a running process asked by its controller (controller), a gate's run
of a command."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mem_profiler.control import defaults
from mem_profiler.control.sampler_lib import library_path
from mem_profiler.core.file_names import absolute_prefix


@dataclass
class CaptureSettings:
    """What a capture is told: through the environment of a program launched under the
    sampler (sampler/base/options.c), or in a controller's request to a running one
    (control_block.ControlBlock.start)."""

    rate: int = defaults.RATE
    device_rate: int = defaults.DEVICE_RATE
    depth: int = defaults.DEPTH
    stack_memory: int = defaults.STACK_MEMORY  # MiB
    prefix: str = defaults.PREFIX
    follow_children: bool = False  # every program the command runs, and their forks
    follow_fork: bool = False  # children the command forks without exec
    unwinder: str = "hybrid"
    capture: bool = True
    log: bool = False  # log mode: the event log and the timeline
    log_cap: int | None = None  # bytes per log file; None: the process's own
    log_files: int | None = None  # log files kept; None: the process's own
    leak_scan: bool = False  # at the end, which live blocks nothing points to (exact at -c 1)

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        lib = str(library_path())
        preload = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = f"{lib}:{preload}" if preload else lib
        env["MEMPROF_CAPTURE"] = "1" if self.capture else "0"
        env["MEMPROF_RATE"] = str(self.rate)
        env["MEMPROF_DEVICE_RATE"] = str(self.device_rate)
        env["MEMPROF_DEPTH"] = str(self.depth)
        env["MEMPROF_STACK_MEMORY"] = str(self.stack_memory)
        env["MEMPROF_PREFIX"] = absolute_prefix(self.prefix)
        env["MEMPROF_UNWIND"] = self.unwinder
        if self.leak_scan:
            env["MEMPROF_LEAK_SCAN"] = "1"
        if self.log:
            env["MEMPROF_MODE"] = "log"
            if self.log_cap is not None:
                env["MEMPROF_LOG_CAP"] = str(self.log_cap)
            if self.log_files is not None:
                env["MEMPROF_LOG_FILES"] = str(self.log_files)
        # A process's forks carry on its window only when asked (ARCHITECTURE.md, *Which
        # processes are profiled*): a shim's subshells are not the program it runs.
        env["MEMPROF_FOLLOW_FORK"] = "1" if self.follow_fork or self.follow_children else "0"
        if self.follow_children:
            env.pop("MEMPROF_PARENT_PID", None)
        else:  # only our direct child (and its forks) capture; programs it runs stay idle
            env["MEMPROF_PARENT_PID"] = str(os.getpid())
        return env
