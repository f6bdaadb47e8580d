"""Function names as reports show them by default: C++ without arguments, templates
or return type, Rust without generics or hashes (short_name), as jeprof shows them."""

from __future__ import annotations

import re

# An argument list: never C++'s `(anonymous namespace)`, nor a group that starts the name
# or follows a single `:`, as in the names pprof profiles of other languages give
# (Node's `file.js:(anonymous:L#1:C#1):1`, `:(external):0`).
# (Each pattern starts with its bracket, the conditions on what comes before looking
# back past it: the engine then finds the bracket as a literal, which in the long names
# of C++ templates costs a fraction of trying the conditions at each character.)
_ARGS_RE = re.compile(
    r"\((?<!^\()(?<!^:\()(?<![^:]:\()(?!anonymous namespace\))[^()]*\)(\s*const)?"
)


# Template or generic arguments (with Rust's `::` before them), but not a Rust qualified
# path: the one that starts a name (`<T as Trait>::f`, `<<T as A>::U as B>::f`) or a
# trait's (`<u32 as <[_]>::to_vec_in::ConvertVec>::to_vec`), nor a group after a single
# `:` (`file.py:<module>:1`).
_TEMPLATE_RE = re.compile(
    r"(?:::<(?<!^::<)(?<!^<::<)(?<! as ::<)(?<!^:::<)(?<![^:]:::<)"
    r"|<(?<!^<)(?<!^<<)(?<! as <)(?<!^:<)(?<![^:]:<))[^<>]*>"
)


# Rust's legacy hash (`::h` and 16 hex digits at the end) and v0 crate disambiguators.
_RUST_HASH_RE = re.compile(r"::h[0-9a-f]{16}$|\[(?<=\w\[)[0-9a-f]{1,16}\]")


# A return type left in front (`void ns::f`, `double* build`): what comes before the
# name that ends the text, after a space, `*` or `&`. The name is found in the reversed
# text, from its start: a search for it at the end would try each of its characters.
_NAME_REVERSED_RE = re.compile(r"[\w:~.$]+")


# ... and an operator's (`std::ostream& std::operator<<`), but not the `new` of
# `operator new`.
_OPERATOR_RE = re.compile(r"\boperator\b")


_OPERATOR_RETURN_TYPE_RE = re.compile(r"^.*?[\s*&]+(?=(?:[\w~.$]+::)*operator\b)")


def short_name(name: str) -> str:
    """Drop argument lists, template arguments and return types, as jeprof's
    ShortFunctionName (and pprof's default demangling) show C++ names; and Rust's hashes
    and generic arguments."""
    if not any(c in name for c in "(<[ ") and "::h" not in name or ".(" in name:
        return name  # a C name, another with nothing to drop, or Go's main.(*T).method
    name = without_rust_hashes(name)
    for pattern, bracket in ((_ARGS_RE, "("), (_TEMPLATE_RE, "<")):
        while bracket in name:  # innermost groups first, then those they were in
            name, removed = pattern.subn("", name)
            if not removed:
                break
    if not any(c in name for c in " *&"):
        return name.strip()  # no return type left in front
    return _without_return_type(name).strip()


def _without_return_type(name: str) -> str:
    if _OPERATOR_RE.search(name):
        return _OPERATOR_RETURN_TYPE_RE.sub("", name)
    found = _NAME_REVERSED_RE.match(name[::-1])
    start = len(name) - found.end() if found else 0
    if start > 0 and (name[start - 1].isspace() or name[start - 1] in "*&"):
        return name[start:]
    return name


def without_rust_hashes(name: str) -> str:
    # The legacy hash can only be the name's last 19 characters.
    if "[" not in name and name[-19:-16] != "::h":
        return name
    return _RUST_HASH_RE.sub("", name)


class FunctionTable:
    """Functions, each added once: its name (demangled), the name its object gives it and,
    for a Python function, its file."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.system_names: list[str] = []
        self.python_files: list[str | None] = []
        self._ids: dict[tuple[str, str | None], int] = {}

    def ids(
        self,
        names: list[str],
        system_names: list[str] | None = None,
        python_files: list[str | None] | None = None,
    ) -> list[int]:
        """The id of each function, added on first sight (system name: the name itself
        unless given; native unless its Python file is given)."""
        out = []
        files = python_files or [None] * len(names)
        known = self._ids
        for name, system, file in zip(names, system_names or names, files, strict=True):
            i = known.get((name, file))
            if i is None:
                i = known[name, file] = len(self.names)
                self.names.append(name)
                self.system_names.append(system)
                self.python_files.append(file)
            out.append(i)
        return out
