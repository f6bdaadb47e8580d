"""What a push is told: the backend (its endpoint and protocol), how often, the user's
labels and headers, and the credentials, read from a file or the environment, never
from the command line where `ps` shows them."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from mem_profiler.core.errors import UserError
from mem_profiler.push.backends import BACKENDS, backend_named

DEFAULT_EVERY_S = 15.0
AGENT_MAX_STACKS = 1_000_000  # the agent keeps of each process's window (agent --max-stacks)
AUTH_ENV = "MEM_PROFILER_PUSH_AUTH"
# Prometheus' label names, which every backend takes; `__` names are the backends' own.
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_LABEL_VALUE = 2048  # Pyroscope's limit
MAX_USER_LABELS = 20  # Pyroscope takes 30 label names; ours are 10
HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
HEADER_VALUE_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")  # visible ASCII
# Headers mem_profiler sets, and those that frame the message or the connection.
OWN_HEADERS = ("authorization", "content-type", "content-length", "host")
FRAMING_HEADERS = (
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
)


class PushSettingsError(UserError):
    """A push option that cannot be used, in one sentence."""


@dataclass
class PushSettings:
    url: str  # the endpoint, the protocol's path included
    protocol: str  # one of BACKENDS' protocols
    every: float = DEFAULT_EVERY_S  # seconds between pushes
    labels: dict[str, str] = field(default_factory=dict)  # the user's, over ours
    headers: dict[str, str] = field(default_factory=dict)  # the user's and the credentials'


def push_settings(
    url: str,
    protocol: str | None = None,
    every: float = DEFAULT_EVERY_S,
    labels: tuple[str, ...] = (),
    headers: tuple[str, ...] = (),
    auth_file: str | None = None,
) -> PushSettings:
    """The settings of --push URL and the options beside it; PushSettingsError."""
    endpoint, protocol = _endpoint(url, protocol)
    given: dict[str, str] = {}
    for text in headers:
        name, value = _header(text)
        if name.lower() in map(str.lower, given):
            raise PushSettingsError(f"--push-header {name} is given twice")
        given[name] = value
    credentials = _credentials(auth_file)
    if credentials:
        given["Authorization"] = credentials
    return PushSettings(endpoint, protocol, every, _labels(labels), given)


def _endpoint(url: str, protocol: str | None) -> tuple[str, str]:
    if not url.isascii() or not url.isprintable() or " " in url:
        raise PushSettingsError(
            f"--push takes a URL of printable ASCII, not {url!r}: percent-encode the rest"
        )
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushSettingsError(f"--push takes an http:// or https:// URL, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 and parts.netloc.rpartition("]")[2].count(":"):
        raise PushSettingsError(f"--push URL {url}: its port is not one of 1 to 65535")
    if parts.username or parts.password:
        raise PushSettingsError(
            "--push URL holds credentials, which ps shows to every user: put them in a "
            f"file for --push-auth-file or in ${AUTH_ENV}"
        )
    path = parts.path.rstrip("/")
    if protocol is None:
        told = [b for b in BACKENDS if path.endswith(b.path)]
        told = told or [b for b in BACKENDS if port and b.port == port]
        if not told:
            raise PushSettingsError(
                f"which backend {url} is cannot be told from its path or port: say it "
                f"with --push-protocol ({', '.join(b.protocol for b in BACKENDS)})"
            )
        protocol = told[0].protocol
    if not path.endswith(backend_named(protocol).path):
        path += backend_named(protocol).path
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), protocol


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not HEADER_NAME_RE.fullmatch(name) or not HEADER_VALUE_RE.fullmatch(value):
        raise PushSettingsError(
            f"--push-header takes 'Name: value' with a value of printable ASCII, not {text!r}"
        )
    if name.lower() in OWN_HEADERS:
        raise PushSettingsError(
            f"--push-header {name} is set by mem_profiler"
            + (" (credentials: --push-auth-file)" if name.lower() == "authorization" else "")
        )
    if name.lower() in FRAMING_HEADERS:
        raise PushSettingsError(
            f"--push-header {name} would change how the request is framed or carried: "
            "it is not one to give"
        )
    return name, value


def _labels(given: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for text in given:
        name, equals, value = text.partition("=")
        if not equals or not LABEL_NAME_RE.fullmatch(name) or name.startswith("__"):
            raise PushSettingsError(
                f"--label takes NAME=VALUE with a NAME of letters, digits and _ not "
                f"starting with a digit or __, not {text!r}"
            )
        if not value or len(value) > MAX_LABEL_VALUE or not value.isprintable():
            raise PushSettingsError(
                f"--label {name}= takes a printable value of 1 to {MAX_LABEL_VALUE} characters"
            )
        if name in labels:
            raise PushSettingsError(f"--label {name} is given twice")
        labels[name] = value
    if len(labels) > MAX_USER_LABELS:
        raise PushSettingsError(f"at most {MAX_USER_LABELS} --label (the backends limit them)")
    return labels


def _credentials(auth_file: str | None) -> str | None:
    """The Authorization header from `auth_file` or $MEM_PROFILER_PUSH_AUTH: `Bearer
    TOKEN`, or `Basic USER:PASSWORD` (encoded here)."""
    if auth_file is not None:
        text = _read_secret(auth_file)
        where = auth_file
    elif os.environ.get(AUTH_ENV):
        text, where = os.environ[AUTH_ENV], f"${AUTH_ENV}"
    else:
        return None
    scheme, _, secret = text.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() == "bearer" and secret and secret.isprintable():
        return f"Bearer {secret}"
    if scheme.lower() == "basic" and ":" in secret and secret.isprintable():
        import base64

        return "Basic " + base64.b64encode(secret.encode()).decode()
    raise PushSettingsError(f"{where} holds neither 'Bearer TOKEN' nor 'Basic USER:PASSWORD'")


def _read_secret(path: str) -> str:
    """A credentials file: a regular file no other user may read or change (as ssh
    asks of a key), read through the descriptor that was checked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise PushSettingsError(
            f"--push-auth-file {path}: {err.strerror} (a link is not followed)"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PushSettingsError(f"--push-auth-file {path} is not a regular file")
        if st.st_mode & 0o077 or st.st_uid not in (os.geteuid(), 0):
            raise PushSettingsError(
                f"--push-auth-file {path} may be read or changed by other users: "
                f"make it yours and chmod 600 {path}"
            )
        data = f.read(4097)
    if len(data) > 4096:
        raise PushSettingsError(f"--push-auth-file {path} is longer than credentials are")
    return data.decode("utf-8", "replace")
