"""Errors a user can cause: the CLIs print them as one sentence and exit 2."""


class UserError(Exception):
    """A problem with the user's input (file, binary, options), not a bug."""


class ProgramNotHere(UserError):
    """The program a profile names is not on this machine, or it names none. `foreign`: the
    profile is another tool's, which pprof reads without its program (addresses)."""

    def __init__(self, message: str, foreign: bool) -> None:
        super().__init__(message)
        self.foreign = foreign


class HeapFileError(UserError):
    """A .heap file that is missing, unreadable or malformed."""


class ElfError(UserError):
    """A binary that is missing, unreadable or not an ELF object."""


class BuildIdMismatch(UserError):
    """The binary given is not the one that ran."""


class BudgetError(UserError):
    """A budget that cannot be understood: a bad size, heap, key or budget file."""
