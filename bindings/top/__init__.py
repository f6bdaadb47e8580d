"""`mem_profiler top`: a live view of a running process (the session, its text and
screen), over snapshots of the process's window (live_view) and the stacks they rank
(stacks)."""
