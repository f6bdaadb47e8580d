"""Test doubles of the backends profiles are pushed to, which refuse what the real servers
refuse (each rule names the source it is from), and keep what they take:

- Pyroscope (grafana/pyroscope, connect-go v1.19): Connect's POST
  /push.v1.PusherService/Push, and the legacy POST /ingest;
- Parca (parca-dev/parca): WriteRaw through its grpc-gateway, POST /api/profiles/writeraw;
- an OpenTelemetry Collector's OTLP/HTTP profiles receiver, POST /v1development/profiles,
  decoded with opentelemetry-proto's own classes and checked as Parca's OTLP validator
  checks (pkg/normalizer/otel.go), the strictest reader of the signal.

The pprof each carries is decoded here with a protobuf reader of the tests' own, not the
parser's."""

from __future__ import annotations

import base64
import gzip
import http.server
import io
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a request is decoded, with protobuf
    from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
        ExportProfilesServiceRequest,
    )

MAX_PROFILE_BYTES = 4 << 20  # pyroscope: max_profile_size_bytes
MAX_SAMPLES = 16000  # pyroscope: max_profile_stacktrace_samples
MAX_LABEL_NAMES = 30  # pyroscope: max_label_names_per_series
PROMETHEUS_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
INGEST_NAME_RE = re.compile(r"([A-Za-z0-9_./-]+)(?:\{(.*)\})?")
INGEST_KEY_RE = re.compile(r"[A-Za-z0-9_.]+")


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's fields in order: (number, value), varints and fixed as ints,
    length-delimited as bytes; Refusal when it is not a message."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Refusal(400, "invalid_argument", "field number 0")
        value: int | bytes
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = int.from_bytes(buf[i : i + 8], "little"), i + 8
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 5:
            value, i = int.from_bytes(buf[i : i + 4], "little"), i + 4
        else:
            raise Refusal(400, "invalid_argument", f"wire type {wire}")
        if i > len(buf):
            raise Refusal(400, "invalid_argument", "truncated message")
        out.append((number, value))
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise Refusal(400, "invalid_argument", "bad varint")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _ints(values: list[int | bytes]) -> list[int]:
    """Repeated varints, packed or not."""
    out: list[int] = []
    for v in values:
        if isinstance(v, int):
            out.append(v)
        else:
            i = 0
            while i < len(v):
                n, i = _varint(v, i)
                out.append(n)
    return out


def _by_number(buf: bytes) -> dict[int, list[int | bytes]]:
    out: dict[int, list[int | bytes]] = {}
    for number, value in fields(buf):
        out.setdefault(number, []).append(value)
    return out


def _message(value: int | bytes) -> dict[int, list[int | bytes]]:
    """The fields, by number, of a field that holds a message (length-delimited)."""
    assert isinstance(value, bytes)
    return _by_number(value)


def _bytes(value: int | bytes) -> bytes:
    """A field that holds bytes or a string (length-delimited)."""
    assert isinstance(value, bytes)
    return value


@dataclass
class Pprof:
    """What a test reads of a pushed pprof: its sample types, time, period and samples
    as (function names leaf first, values), and its mappings' build-ids."""

    sample_types: list[str]
    time_nanos: int
    duration_nanos: int
    samples: list[tuple[list[str], list[int]]]
    build_ids: list[str]

    def total(self, sample_type: str) -> int:
        column = self.sample_types.index(sample_type)
        return sum(values[column] for _, values in self.samples)

    def cumulative(self, sample_type: str, function: str) -> int:
        """The values of the samples whose stack holds `function`."""
        column = self.sample_types.index(sample_type)
        return sum(values[column] for names, values in self.samples if function in names)

    def by_function(self, sample_type: str, skip: tuple[str, ...] = ()) -> dict[str, int]:
        """Each sample's value under its first function not in `skip`, summed."""
        column = self.sample_types.index(sample_type)
        out: dict[str, int] = {}
        for names, values in self.samples:
            name = next((n for n in names if n not in skip), "?")
            out[name] = out.get(name, 0) + values[column]
        return out


def read_pprof(raw: bytes, strict_ids: bool = False) -> Pprof:
    """A pprof, gzipped or not, checked as Pyroscope's ValidateProfile does (string 0
    empty, sample types, value counts, ids not 0 and in range; pkg/validation/validate.go)
    and with `strict_ids` as Parca's ValidatePprofProfile (ids are index + 1)."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(MAX_PROFILE_BYTES + 1)
        except (OSError, EOFError) as err:
            raise Refusal(400, "invalid_argument", f"bad gzip: {err}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise Refusal(400, "invalid_argument", "profile too large")
    top = _by_number(raw)
    strings = [_bytes(s).decode("utf-8") for s in top.get(6, [])]
    if not strings or strings[0] != "":
        raise Refusal(400, "invalid_argument", "string 0 should be empty string")

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise Refusal(400, "invalid_argument", f"string index {index} out of range")
        return strings[index]

    types = []
    for vt in top.get(1, []):
        t = _message(vt)
        name = text(_ints(t.get(1, [0]))[0])
        if "-" in name:
            raise Refusal(400, "invalid_argument", f"sample type {name!r} has a -")
        types.append(name)
    samples_raw = top.get(2, [])
    if samples_raw and not types:
        raise Refusal(400, "invalid_argument", "no sample types")
    if len(samples_raw) > MAX_SAMPLES:
        raise Refusal(400, "invalid_argument", "too many samples")
    functions: dict[int, str] = {}
    for n, f in enumerate(top.get(5, []), 1):
        fm = _message(f)
        fid = _ints(fm.get(1, [0]))[0]
        if fid == 0 or (strict_ids and fid != n):
            raise Refusal(400, "invalid_argument", f"function id {fid} at {n}")
        functions[fid] = text(_ints(fm.get(2, [0]))[0])
        text(_ints(fm.get(4, [0]))[0])
    mappings = []
    for n, m in enumerate(top.get(3, []), 1):
        mm = _message(m)
        if strict_ids and _ints(mm.get(1, [0]))[0] != n:
            raise Refusal(400, "invalid_argument", f"mapping id at {n}")
        mappings.append(text(_ints(mm.get(6, [0]))[0]))
    locations: dict[int, list[str]] = {}
    for n, loc in enumerate(top.get(4, []), 1):
        lm = _message(loc)
        lid = _ints(lm.get(1, [0]))[0]
        if lid == 0 or (strict_ids and lid != n):
            raise Refusal(400, "invalid_argument", f"location id {lid} at {n}")
        mapping = _ints(lm.get(2, [0]))[0]
        if mapping > len(mappings):
            raise Refusal(400, "invalid_argument", f"mapping {mapping} out of range")
        names = []
        for line in lm.get(4, []):
            fid = _ints(_message(line).get(1, [0]))[0]
            if fid not in functions:
                raise Refusal(400, "invalid_argument", f"function {fid} out of range")
            names.append(functions[fid])
        locations[lid] = names or [hex(_ints(lm.get(3, [0]))[0])]
    samples = []
    for s in samples_raw:
        sm = _message(s)
        ids, values = _ints(sm.get(1, [])), _ints(sm.get(2, []))
        if len(values) != len(types):
            raise Refusal(400, "invalid_argument", "values do not match the sample types")
        if any(i not in locations for i in ids):
            raise Refusal(400, "invalid_argument", "location out of range")
        names = [name for i in ids for name in locations[i]]
        samples.append((names, [v - (1 << 64) if v >> 63 else v for v in values]))
    when = _ints(top.get(9, [0]))[0]
    return Pprof(types, when, _ints(top.get(10, [0]))[0], samples, mappings)


@dataclass
class Push:
    """One profile a double took: the series' labels and the profile."""

    labels: dict[str, str]
    profile: Pprof
    raw: bytes  # as it came, for the peers' readers
    received: float = field(default_factory=time.monotonic)


class Backend:
    """One double of each protocol on 127.0.0.1, each keeping what it took in `pushes`
    (pprof) or `otlp` (ExportProfilesServiceRequest). `fail_with` makes it answer every
    request with that status (and `retry_after`) until set back to None; `tenant`
    demands X-Scope-OrgID as a multi-tenant Pyroscope does."""

    def __init__(self, tenant: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.pushes: list[Push] = []
        self.otlp: list[ExportProfilesServiceRequest] = []
        self.refused: list[tuple[str, int, str]] = []  # path, status, message
        self.fail_with: int | None = None
        self.retry_after: str | None = None
        self.tenant = tenant
        self.requests = 0
        self.lock = threading.Lock()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                backend._handle(self)

            def do_GET(self) -> None:
                self.send_response(405)
                self.send_header("Allow", "POST")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:  # (certificate, key): HTTPS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        path, _, query = request.path.partition("?")
        with self.lock:
            self.requests += 1
        if self.fail_with is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return self._answer(request, self.fail_with, b'{"message":"unavailable"}', headers)
        try:
            if path == "/push.v1.PusherService/Push":
                reply = self._pyroscope(request, body)
            elif path == "/ingest":
                reply = self._ingest(request, query, body)
            elif path == "/api/profiles/writeraw":
                reply = self._parca(request, body)
            elif path == "/v1development/profiles":
                reply = self._otlp(request, body)
            else:
                raise Refusal(404, "not_found", f"no route {path}")
        except Refusal as refusal:
            with self.lock:
                self.refused.append((path, refusal.status, str(refusal)))
            error = json.dumps({"code": refusal.code, "message": str(refusal)}).encode()
            return self._answer(request, refusal.status, error)
        self._answer(request, 200, reply)

    def _answer(
        self,
        request: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _tenant(self, request: http.server.BaseHTTPRequestHandler) -> None:
        if self.tenant is not None and request.headers.get("X-Scope-OrgID") != self.tenant:
            raise Refusal(401, "unauthenticated", "no org id")

    def _pyroscope(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> bytes:
        """connect-go's unary handler (415 for another content type, 501 for an unknown
        encoding) and pyroscope's distributor.PushParsed."""
        content_type = request.headers.get("Content-Type", "")
        if content_type not in ("application/proto", "application/json"):
            raise Refusal(415, "unimplemented", f"content type {content_type!r}")
        encoding = request.headers.get("Content-Encoding", "identity")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding != "identity":
            raise Refusal(501, "unimplemented", f"unknown compression {encoding!r}")
        if content_type != "application/proto":
            raise Refusal(415, "unimplemented", "this double reads application/proto")
        self._tenant(request)
        taken = []
        for number, series in fields(body):
            if number != 1 or not isinstance(series, bytes):
                continue
            parts = _by_number(series)
            labels = self._labels(
                [(_string(pair, 1), _string(pair, 2)) for pair in parts.get(1, [])]
            )
            for sample in parts.get(2, []):
                raw = _bytes(_message(sample).get(1, [b""])[0])
                profile = read_pprof(raw)
                self._check_time(profile)
                taken.append(Push(labels, profile, raw))
        if not taken:
            raise Refusal(400, "invalid_argument", "no profiles received")
        with self.lock:
            self.pushes += taken
        return b""

    def _labels(self, pairs: list[tuple[str, str]]) -> dict[str, str]:
        """pyroscope's ValidateLabels (validate.go)."""
        names = [n for n, _ in pairs]
        if not pairs:
            raise Refusal(400, "invalid_argument", "no labels")
        if len(pairs) > MAX_LABEL_NAMES:
            raise Refusal(400, "invalid_argument", "too many labels")
        if len(set(names)) != len(names):
            raise Refusal(400, "invalid_argument", "duplicate label name")
        labels = dict(pairs)
        if not labels.get("__name__"):
            raise Refusal(400, "invalid_argument", "invalid metric name")
        for name, value in pairs:
            if len(name) > 1024 or len(value) > 2048:
                raise Refusal(400, "invalid_argument", "label too long")
        return labels

    @staticmethod
    def _check_time(profile: Pprof) -> None:
        now = time.time_ns()
        if profile.time_nanos > 0 and not (
            now - 3600 * 10**9 < profile.time_nanos < now + 600 * 10**9
        ):
            raise Refusal(400, "invalid_argument", "profile time out of the accepted window")

    def _ingest(
        self, request: http.server.BaseHTTPRequestHandler, query: str, body: bytes
    ) -> bytes:
        """pkg/ingester/pyroscope/ingest_handler.go: 400 for a bad name, 422 for a bad
        profile; labels as createLabels makes them."""
        self._tenant(request)
        params = urllib.parse.parse_qs(query)
        m = INGEST_NAME_RE.fullmatch(params.get("name", [""])[0])
        if m is None:
            raise Refusal(400, "invalid_argument", "bad name")
        labels = {"service_name": m[1], "__delta__": "false"}
        for pair in filter(None, (m[2] or "").split(",")):
            key, equals, value = pair.partition("=")
            if not equals or not INGEST_KEY_RE.fullmatch(key):
                raise Refusal(400, "invalid_argument", f"bad label {pair!r}")
            if not key.startswith("__"):
                labels[key] = value
        if params.get("format") != ["pprof"]:
            raise Refusal(422, "unknown", "this double takes format=pprof")
        try:
            profile = read_pprof(body)
        except Refusal as refusal:
            raise Refusal(422, "unknown", str(refusal)) from None
        if any(t.startswith(("alloc_", "inuse_")) for t in profile.sample_types):
            labels["__name__"] = "memory"
        with self.lock:
            self.pushes.append(Push(labels, profile, body))
        return b""

    def _parca(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> bytes:
        """pkg/normalizer: NormalizeWriteRawRequest and ValidatePprofProfile; gateway
        errors as {"code": 3, ...}."""
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            raise Refusal(415, "3", "gateway takes application/json")
        try:
            taken = self._parca_series(json.loads(body)["series"])
        except (ValueError, KeyError, TypeError):  # binascii.Error is a ValueError
            raise Refusal(400, "3", "bad JSON") from None
        with self.lock:
            self.pushes += taken
        return b"{}"

    @staticmethod
    def _parca_series(series_list: list) -> list[Push]:
        taken = []
        for series in series_list:
            pairs = [(label["name"], label["value"]) for label in series["labels"]["labels"]]
            names = [n for n, _ in pairs]
            if len(set(names)) != len(names):
                raise Refusal(400, "3", "duplicate label name")
            labels = dict(pairs)
            if not labels.get("__name__"):
                raise Refusal(400, "3", "missing __name__ label")
            for sample in series["samples"]:
                raw = base64.b64decode(sample["rawProfile"])
                taken.append(Push(labels, read_pprof(raw, strict_ids=True), raw))
        return taken

    def _otlp(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> bytes:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2

        if request.headers.get("Content-Type") != "application/x-protobuf":
            raise Refusal(415, "unimplemented", "OTLP/HTTP takes application/x-protobuf")
        self._tenant(request)
        req = profiles_service_pb2.ExportProfilesServiceRequest()
        try:
            req.ParseFromString(body)
        except DecodeError as err:
            raise Refusal(400, "invalid_argument", f"unmarshal: {err}") from None
        check_otlp(req)
        with self.lock:
            self.otlp.append(req)
        return profiles_service_pb2.ExportProfilesServiceResponse().SerializeToString()


def _string(buf: bytes | int, number: int) -> str:
    assert isinstance(buf, bytes)
    value = _by_number(buf).get(number, [b""])[0]
    assert isinstance(value, bytes)
    return value.decode("utf-8")


def check_otlp(req: ExportProfilesServiceRequest) -> None:
    """Parca's ValidateOtelExportProfilesServiceRequest (pkg/normalizer/otel.go)."""
    d = req.dictionary
    if not req.resource_profiles or not req.HasField("dictionary"):
        raise Refusal(400, "invalid_argument", "no resource profiles or no dictionary")
    tables = {
        "mapping_table": d.mapping_table,
        "location_table": d.location_table,
        "function_table": d.function_table,
        "link_table": d.link_table,
        "attribute_table": d.attribute_table,
        "stack_table": d.stack_table,
    }
    for name, table in tables.items():
        if not table or table[0].ByteSize() != 0:
            raise Refusal(400, "invalid_argument", f"{name}[0] must be the empty entry")
    if not d.string_table or d.string_table[0] != "":
        raise Refusal(400, "invalid_argument", "string_table[0] must be empty")

    def index(value: int, table: Sized, what: str) -> None:
        if not 0 <= value < len(table):
            raise Refusal(400, "invalid_argument", f"{what} index {value} out of range")

    for m in d.mapping_table:
        index(m.filename_strindex, d.string_table, "mapping filename")
        for a in m.attribute_indices:
            index(a, d.attribute_table, "mapping attribute")
    for loc in d.location_table:
        index(loc.mapping_index, d.mapping_table, "location mapping")
        for line in loc.lines:
            index(line.function_index, d.function_table, "line function")
    for f in d.function_table:
        for s in (f.name_strindex, f.system_name_strindex, f.filename_strindex):
            index(s, d.string_table, "function string")
    for stack in d.stack_table:
        for loc in stack.location_indices:
            index(loc, d.location_table, "stack location")
    for a in d.attribute_table:
        index(a.key_strindex, d.string_table, "attribute key")
    for rp in req.resource_profiles:
        keys = [kv.key for kv in rp.resource.attributes]
        if "" in keys or len(set(keys)) != len(keys):
            raise Refusal(400, "invalid_argument", "resource attribute keys empty or repeated")
        for sp in rp.scope_profiles:
            if not sp.HasField("scope"):
                raise Refusal(400, "invalid_argument", "scope missing")
            for p in sp.profiles:
                if not p.HasField("sample_type") or not p.HasField("period_type"):
                    raise Refusal(400, "invalid_argument", "sample_type or period_type missing")
                if p.period < 0 or not p.samples:
                    raise Refusal(400, "invalid_argument", "negative period or no samples")
                if p.profile_id and (len(p.profile_id) != 16 or not any(p.profile_id)):
                    raise Refusal(400, "invalid_argument", "bad profile_id")
                for a in p.attribute_indices:
                    index(a, d.attribute_table, "profile attribute")
                for s in p.samples:
                    index(s.stack_index, d.stack_table, "sample stack")
                    if not s.values and not s.timestamps_unix_nano:
                        raise Refusal(400, "invalid_argument", "sample without values")


def otlp_by_function(
    req: ExportProfilesServiceRequest, sample_type: str, skip: tuple[str, ...] = ()
) -> dict[tuple[str, str], dict[str, int]]:
    """Per (service.name, memory.heap) of an OTLP request, each sample's value of the
    profiles of `sample_type` under its first function not in `skip`, summed."""
    d = req.dictionary
    strings = d.string_table

    def first_function(stack_index: int) -> str:
        for loc in d.stack_table[stack_index].location_indices:
            for line in d.location_table[loc].lines:
                name = strings[d.function_table[line.function_index].name_strindex]
                if name not in skip:
                    return name
        return "?"

    out: dict[tuple[str, str], dict[str, int]] = {}
    for rp in req.resource_profiles:
        service = next(
            kv.value.string_value for kv in rp.resource.attributes if kv.key == "service.name"
        )
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                if strings[p.sample_type.type_strindex] != sample_type:
                    continue
                heap = next(
                    d.attribute_table[a].value.string_value
                    for a in p.attribute_indices
                    if strings[d.attribute_table[a].key_strindex] == "memory.heap"
                )
                sums = out.setdefault((service, heap), {})
                for s in p.samples:
                    name = first_function(s.stack_index)
                    sums[name] = sums.get(name, 0) + sum(s.values)
    return out
