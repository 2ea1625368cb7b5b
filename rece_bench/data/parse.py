"""Raw files -> (user, item, timestamp) interactions, one streaming function per raw format.

Every parser reads its file line by line (gzip is sniffed by its magic bytes, whatever the name says) and
keeps only three int64 columns plus the raw ids seen, so peak memory grows with the number of interactions,
never with the file's text. A line that cannot be read is counted (``malformed_lines``) and skipped, or, with
``strict``, is an error. Rows the source itself says to drop (BeerAdvocate reviews with no user name) are
counted as ``skipped_rows``. Every problem with the input surfaces as a one-line ``UserError``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import math
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from rece_bench.errors import UserError, one_line

GZIP_MAGIC = b"\x1f\x8b"
WRONG_FORMAT_AFTER = 100  # this many malformed lines before the first good one: the file is not this format
Record = tuple[str, str, int]


@dataclass(frozen=True)
class Columns:
    """Names of the user, item and time columns (header files) or keys (JSON lines) of a raw file."""

    user: str
    item: str
    time: str

    def __post_init__(self) -> None:
        for field_name in ("user", "item", "time"):
            if not getattr(self, field_name):
                raise UserError(f"the {field_name} column name is empty: pass --{field_name}-col NAME")


@dataclass(frozen=True)
class ParseResult:
    """Interactions in file order: ``user`` and ``item`` are codes into ``users`` and ``items`` (raw ids)."""

    frame: pd.DataFrame  # columns user, item, timestamp; int64
    users: list[str]
    items: list[str]
    format: str
    malformed_lines: int
    skipped_rows: int
    first_malformed: str | None  # "line N: why", for the report

    @property
    def interactions(self) -> int:
        return len(self.frame)


class Malformed(Exception):
    """One line could not be read; the message says why."""


class _Collector:
    """Accumulates records as int64 codes; raw ids are kept once each."""

    def __init__(self, path: Path, fmt: str, strict: bool) -> None:
        self.path, self.fmt, self.strict = path, fmt, strict
        self.user_codes: dict[str, int] = {}
        self.item_codes: dict[str, int] = {}
        self.columns = (array("q"), array("q"), array("q"))
        self.malformed = 0
        self.skipped = 0
        self.first_malformed: str | None = None

    def add(self, records: list[Record]) -> None:
        if not records:
            self.skipped += 1
        for user, item, timestamp in records:
            self.columns[0].append(_code(self.user_codes, user))
            self.columns[1].append(_code(self.item_codes, item))
            self.columns[2].append(timestamp)

    def bad_line(self, lineno: int, why: str) -> None:
        where = f"{self.path} line {lineno}: {why}"
        if self.strict:
            raise UserError(f"{where} (run without --strict to skip and count malformed lines)")
        self.malformed += 1
        self.first_malformed = self.first_malformed or f"line {lineno}: {why}"
        if self.malformed >= WRONG_FORMAT_AFTER and not self.columns[0]:
            raise _wrong_format(self.path, self.fmt, self.first_malformed)

    def result(self) -> ParseResult:
        if not self.columns[0]:
            raise _wrong_format(self.path, self.fmt, self.first_malformed or "no data lines")
        user, item, timestamp = (np.frombuffer(column, dtype=np.int64) for column in self.columns)
        frame = pd.DataFrame({"user": user, "item": item, "timestamp": timestamp})
        return ParseResult(
            frame,
            list(self.user_codes),
            list(self.item_codes),
            self.fmt,
            self.malformed,
            self.skipped,
            self.first_malformed,
        )


def _code(codes: dict[str, int], key: str) -> int:
    code = codes.get(key)
    if code is None:
        code = codes[key] = len(codes)
    return code


def _wrong_format(path: Path, fmt: str, why: str | None) -> UserError:
    return UserError(f"{path} has no readable {fmt} interactions ({why}): check the file and its format")


# ---- reading


def check_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: check the path")
    if not path.is_file():
        raise UserError(f"{path} is not a file: pass the path of the raw data file")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty: download it again or pass another file")
    return path


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _raw_lines(path: Path) -> Iterator[str]:
    """Text lines (newlines kept) of a plain or gzip file; decoding never fails: a byte that is no UTF-8 becomes a
    lone surrogate (``surrogateescape``), so two ids that differ in such bytes stay different, and ``_id`` refuses
    them (the line is malformed) rather than merging them; a bad gzip is a UserError."""
    path = check_file(path)
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            yield from handle
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"{path} is a truncated or corrupt gzip file ({one_line(exc)}): download it again") from None


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its newline), blank lines left out."""
    for lineno, line in enumerate(_raw_lines(path), start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield lineno, text


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str] | Malformed]]:
    """(line number, fields) of a CSV file; a row the csv module rejects comes back as a Malformed."""
    csv.field_size_limit(1 << 20)
    reader = csv.reader(_raw_lines(path), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, Malformed(f"bad CSV ({one_line(exc)})")
            continue
        if any(field.strip() for field in row):
            yield reader.line_num, row


def _collect(
    path: Path,
    fmt: str,
    strict: bool,
    items: Iterable[tuple[int, object]],
    parse_item: Callable[[object], list[Record]],
) -> ParseResult:
    """The shared loop: parse each line, count the malformed ones, return the collected interactions."""
    collector = _Collector(Path(path), fmt, strict)
    for lineno, item in items:
        try:
            if isinstance(item, Malformed):
                raise item
            records = parse_item(item)
        except Malformed as exc:
            collector.bad_line(lineno, str(exc))
            continue
        collector.add(records)
    return collector.result()


# ---- fields


def parse_time(text: str) -> int:
    """Unix seconds from an integer, a float, or an ISO 8601 time (read as UTC when it has no zone)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return _iso_seconds(text)
    if not math.isfinite(value) or abs(value) > 1e13:
        raise Malformed(f"time {text[:40]!r} is out of range")
    return int(value)


def _iso_seconds(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"time {text[:40]!r} is neither unix seconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def _id(text: object, what: str) -> str:
    if text is None:
        raise Malformed(f"no {what}")
    value = str(text).strip()
    if not value:
        raise Malformed(f"empty {what}")
    if any("\udc80" <= char <= "\udcff" for char in value):  # a byte that is no UTF-8 (see _raw_lines)
        shown = value.encode("utf-8", "surrogateescape")[:40]
        raise Malformed(f"{what} {shown!r} is not UTF-8 text (convert the file, e.g. iconv -f latin1 -t utf-8)")
    return value


def _fields(text: str, sep: str | None, count: int) -> list[str]:
    fields = text.split(sep)
    if len(fields) < count:
        raise Malformed(f"{len(fields)} fields, expected {count}")
    return fields


def _key(record: dict, key: str) -> object:
    if key not in record:
        raise Malformed(f"missing key {key!r}")
    return record[key]


# ---- formats

Parser = Callable[..., ParseResult]
PARSERS: dict[str, Parser] = {}


def register(name: str) -> Callable[[Parser], Parser]:
    def decorate(function: Parser) -> Parser:
        if name in PARSERS:
            raise ValueError(f"raw format {name!r} is already registered")
        PARSERS[name] = function
        return function

    return decorate


def get_parser(fmt: str) -> Parser:
    try:
        return PARSERS[fmt]
    except KeyError:
        raise UserError(f"unknown raw format {fmt!r}: choose one of {', '.join(sorted(PARSERS))}") from None


@register("gowalla")
def parse_gowalla(path: Path, strict: bool = False) -> ParseResult:
    """SNAP check-ins: ``user<TAB>ISO-time<TAB>lat<TAB>lon<TAB>location``; item = location, time as UTC."""

    def line(text: str) -> list[Record]:
        fields = _fields(text, "\t", 5)
        return [(_id(fields[0], "user"), _id(fields[4], "location"), _iso_seconds(fields[1].strip()))]

    return _collect(path, "gowalla", strict, _numbered_lines(path), line)


@register("behance")
def parse_behance(path: Path, strict: bool = False) -> ParseResult:
    """``user item unix_time`` per line, space separated; ids stay strings (leading zeros matter)."""

    def line(text: str) -> list[Record]:
        fields = _fields(text, None, 3)
        return [(_id(fields[0], "user"), _id(fields[1], "item"), parse_time(fields[2]))]

    return _collect(path, "behance", strict, _numbered_lines(path), line)


def _amazon_csv(path: Path, strict: bool, fmt: str, user_at: int, item_at: int) -> ParseResult:
    def row(fields: list[str]) -> list[Record]:
        if len(fields) < 4:
            raise Malformed(f"{len(fields)} fields, expected 4")
        return [(_id(fields[user_at], "user"), _id(fields[item_at], "item"), parse_time(fields[3]))]

    return _collect(path, fmt, strict, _csv_rows(path, ","), row)


@register("amazon_csv_item_first")
def parse_amazon_csv_item_first(path: Path, strict: bool = False) -> ParseResult:
    """Amazon 2018 ratings: ``item,user,rating,unix_time``, no header (Kindle Store)."""
    return _amazon_csv(path, strict, "amazon_csv_item_first", user_at=1, item_at=0)


@register("amazon_csv_user_first")
def parse_amazon_csv_user_first(path: Path, strict: bool = False) -> ParseResult:
    """Amazon 2014 ratings: ``user,item,rating,unix_time``, no header (ratings_Beauty.csv)."""
    return _amazon_csv(path, strict, "amazon_csv_user_first", user_at=0, item_at=1)


def _json_object(text: str) -> dict:
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed("not a JSON object") from None
    if not isinstance(record, dict):
        raise Malformed("not a JSON object")
    return record


@register("amazon_json")
def parse_amazon_json(path: Path, strict: bool = False) -> ParseResult:
    """Amazon review JSON lines: ``reviewerID``, ``asin``, ``unixReviewTime``."""

    def line(text: str) -> list[Record]:
        record = _json_object(text)
        user, item = _id(_key(record, "reviewerID"), "user"), _id(_key(record, "asin"), "item")
        return [(user, item, parse_time(str(_key(record, "unixReviewTime"))))]

    return _collect(path, "amazon_json", strict, _numbered_lines(path), line)


@register("beer_dict")
def parse_beer_dict(path: Path, strict: bool = False) -> ParseResult:
    """McAuley BeerAdvocate dump: one Python dict literal per line; reviews without a user are skipped."""

    def line(text: str) -> list[Record]:
        if not text.lstrip().startswith("{"):
            raise Malformed("not a dict literal")
        try:
            record = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise Malformed("not a dict literal") from None
        if not isinstance(record, dict):
            raise Malformed("not a dict literal")
        user = record.get("review/profileName")
        if user is None or not str(user).strip():
            return []
        item = _id(_key(record, "beer/beerId"), "beer")
        return [(str(user).strip(), item, parse_time(str(_key(record, "review/time"))))]

    return _collect(path, "beer_dict", strict, _numbered_lines(path), line)


BEER_CSV_COLUMNS = Columns(user="review_profilename", item="beer_beerid", time="review_time")


@register("beer_csv")
def parse_beer_csv(path: Path, strict: bool = False) -> ParseResult:
    """Kaggle ``beer_reviews.csv`` (header, quoted commas); reviews with an empty user name are skipped."""
    return _header_table(path, strict, "beer_csv", ",", BEER_CSV_COLUMNS, skip_empty_user=True)


@register("sequence")
def parse_sequence(path: Path, strict: bool = False) -> ParseResult:
    """``user item item ...`` per line in time order (the S3-Rec files); the position is the timestamp."""

    def line(text: str) -> list[Record]:
        fields = text.split()
        if len(fields) < 2:
            raise Malformed("a user with no items")
        return [(fields[0], item, position) for position, item in enumerate(fields[1:])]

    return _collect(path, "sequence", strict, _numbered_lines(path), line)


# ---- tables


def _header_table(
    path: Path, strict: bool, fmt: str, delimiter: str, columns: Columns, skip_empty_user: bool = False
) -> ParseResult:
    rows = _csv_rows(path, delimiter)
    header = next(rows, None)
    if header is None or isinstance(header[1], Malformed):
        raise _wrong_format(Path(path), fmt, "no header line")
    at = _column_positions(Path(path), [name.strip() for name in header[1]], columns)

    def row(fields: list[str]) -> list[Record]:
        if len(fields) <= max(at):
            raise Malformed(f"{len(fields)} fields, expected at least {max(at) + 1}")
        if skip_empty_user and not fields[at[0]].strip():
            return []
        return [(_id(fields[at[0]], "user"), _id(fields[at[1]], "item"), parse_time(fields[at[2]]))]

    return _collect(path, fmt, strict, rows, row)


def _column_positions(path: Path, header: list[str], columns: Columns) -> tuple[int, int, int]:
    wanted = (columns.user, columns.item, columns.time)
    missing = [name for name in wanted if name not in header]
    if missing:
        shown = one_line(", ".join(header[:20]))
        raise UserError(
            f"{path} lacks column(s) {', '.join(missing)} (it has: {shown}): "
            "pass --user-col/--item-col/--time-col or use the right file"
        )
    return header.index(columns.user), header.index(columns.item), header.index(columns.time)


def parse_csv(path: Path, columns: Columns, strict: bool = False) -> ParseResult:
    """A comma-separated file with a header naming ``columns``."""
    return _header_table(path, strict, "csv", ",", columns)


def parse_tsv(path: Path, columns: Columns, strict: bool = False) -> ParseResult:
    """A tab-separated file with a header naming ``columns``."""
    return _header_table(path, strict, "tsv", "\t", columns)


def parse_jsonl(path: Path, columns: Columns, strict: bool = False) -> ParseResult:
    """JSON lines, one object per line, with the keys named by ``columns``."""

    def line(text: str) -> list[Record]:
        record = _json_object(text)
        user, item = _id(_key(record, columns.user), "user"), _id(_key(record, columns.item), "item")
        return [(user, item, parse_time(str(_key(record, columns.time))))]

    return _collect(path, "jsonl", strict, _numbered_lines(path), line)


def parse_parquet(path: Path, columns: Columns, strict: bool = False) -> ParseResult:
    """A Parquet file, read a row group at a time; times may be integers, floats, strings or timestamps."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = check_file(path)
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path} is not a readable Parquet file ({one_line(exc)}): check the file") from None
    _column_positions(path, handle.schema_arrow.names, columns)
    wanted = [columns.user, columns.item, columns.time]
    batches = (batch for batch in handle.iter_batches(columns=wanted, batch_size=65_536))
    return _collect(path, "parquet", strict, _parquet_rows(path, batches), _parquet_row)


def _parquet_rows(path: Path, batches: Iterator) -> Iterator[tuple[int, object]]:
    import pyarrow as pa

    lineno = 0
    try:
        for batch in batches:
            times = batch.column(2)
            if pa.types.is_timestamp(times.type) or pa.types.is_date(times.type):
                times = times.cast(pa.timestamp("s")).cast(pa.int64())
            for user, item, moment in zip(  # noqa: B905 - equal lengths: columns of one batch
                *(c.to_pylist() for c in (batch.column(0), batch.column(1), times))
            ):
                lineno += 1
                yield lineno, (user, item, moment)
    except pa.ArrowException as exc:
        raise UserError(f"{path} is a damaged Parquet file ({one_line(exc)}): check the file") from None


def _parquet_row(values: tuple) -> list[Record]:
    user, item, moment = values
    if moment is None:
        raise Malformed("no time")
    return [(_id(user, "user"), _id(item, "item"), parse_time(str(moment)))]


TABLE_PARSERS: dict[str, Callable[..., ParseResult]] = {
    "csv": parse_csv,
    "tsv": parse_tsv,
    "jsonl": parse_jsonl,
    "parquet": parse_parquet,
}


def table_format(path: Path) -> str:
    """csv, tsv, jsonl or parquet, from the file name (a trailing .gz is ignored)."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    ext = {"json": "jsonl", "ndjson": "jsonl", "txt": "tsv", "pq": "parquet"}.get(ext, ext)
    if ext not in TABLE_PARSERS:
        raise UserError(f"cannot tell the format of {path} from its name: use a .csv, .tsv, .parquet or .jsonl file")
    return ext


# ---- sniffing


def _first_line(path: Path) -> str:
    for _, text in _numbered_lines(path):
        return text.strip()
    raise UserError(f"{path} has no data lines: download it again or pass another file")


def detect_format(path: Path, candidates: tuple[str, ...]) -> str:
    """Which of a card's raw formats ``path`` is in, from its first line; one candidate needs no sniffing."""
    if len(candidates) == 1:
        return candidates[0]
    line = _first_line(path)
    if line.startswith("{"):
        prefer = ("beer_dict",) if line.startswith("{'") else ("amazon_json", "jsonl")
    elif "," in line:
        prefer = ("beer_csv", "amazon_csv_user_first", "amazon_csv_item_first", "csv")
    else:
        prefer = ("sequence", "behance", "gowalla", "tsv")
    return next((fmt for fmt in prefer if fmt in candidates), candidates[0])
