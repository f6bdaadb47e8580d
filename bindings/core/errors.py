"""Errors a user can cause: the CLIs print them as one sentence and exit 2."""


class UserError(Exception):
    """A problem with the user's input (file, binary, options), not a bug."""


class HeapFileError(UserError):
    """A .heap file that is missing, unreadable or malformed."""


class ElfError(UserError):
    """A binary that is missing, unreadable or not an ELF object."""


class BuildIdMismatch(UserError):
    """The binary given is not the one that ran."""


class BudgetError(UserError):
    """A budget that cannot be understood: a bad size, heap, key or budget file."""
