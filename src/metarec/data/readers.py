"""Readers for public formats and for any CSV/Parquet log with a column mapping.

Every reader returns a cleaned :class:`~metarec.data.Dataset`; the cleaning (and its report)
is the same for all, in :mod:`metarec.data.cleaning`. Reading is vectorised: files are
parsed by pandas' C parser as strings and typed column by column, never row by row.

Formats (``--format``): ``movielens-100k``, ``movielens``, ``recbole``, ``taobao``, ``csv``,
``parquet`` and ``synthetic`` (a directory written by :func:`metarec.data.synthetic.write_world`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metarec.data.cleaning import parse_timestamps
from metarec.data.dataset import Dataset, build_dataset
from metarec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


# ---------------------------------------------------------------------------- file helpers
def need_file(path: Path, what: str = "data file") -> Path:
    """``path``, or a DataError where it is missing, a directory or empty."""
    if not path.exists():
        raise DataError(f"{path}: not found ({what})")
    if path.is_dir():  # was "Is a directory", from the parser
        raise DataError(f"{path}: is a directory, not a {what}; give the file itself")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return path


def read_delimited(
    path: Path,
    *,
    sep: str,
    names: Sequence[str] | None = None,
    header: bool = False,
    encoding: str = "utf-8",
    required: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited text file as strings, with a ``_row`` line-number column.

    Args:
        names: column names for a header-less file; the file must have at least as many
            fields per line as ``required`` needs.
        header: the first line names the columns.
        required: columns that must exist (after naming); a missing one is a DataError.
    """
    need_file(path)
    source: Any = path
    try:
        if len(sep) > 1:
            # Multi-character separators (ML-1M's '::') would force pandas' slow Python engine.
            source = io.StringIO(path.read_text(encoding=encoding).replace(sep, "\t"))
            sep = "\t"
        quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL  # TSV fields carry quotes literally
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(
                source,
                sep=sep,
                header=0 if header else None,
                # Never the first column as an index: pandas does that when the first data
                # line has one field more than the header, and every column then shifts.
                index_col=False,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding=encoding,
                quoting=quoting,
                engine="c",
            )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except UnicodeDecodeError as exc:
        where = not_utf8(path) if encoding == "utf-8" else None
        raise where or DataError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from exc
    except pd.errors.ParserError as exc:
        count = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if count:  # pandas's C parser on a line longer than the first
            raise too_many_fields(path, count[2], count[3], count[1], header) from exc
        raise DataError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from exc
    if header and any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        # Lines longer than the header, whose extra fields pandas dropped: harmless where they
        # are empty (a delimiter at the end of each line), an error where they hold data.
        if isinstance(source, io.StringIO):
            source.seek(0)
        long = first_long_line(source, sep, frame.shape[1], encoding, quoting)
        if long is not None:
            raise too_many_fields(path, *long, frame.shape[1])
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    if header:  # pandas reads a repeated name as name.1: keep which names the header repeats
        if isinstance(source, io.StringIO):
            source.seek(0)
            first = source.readline()
        else:
            with open(path, encoding=encoding, newline="") as fh:
                first = fh.readline()
        frame.attrs["repeated"] = repeated_names(first, sep, quoting)
    if names is not None:
        if frame.shape[1] < len(required):
            raise DataError(
                f"{path}: expected {len(required)} columns ({', '.join(required)}), "
                f"found {frame.shape[1]} on line 1; missing column {required[frame.shape[1]]!r}"
            )
        frame = frame.iloc[:, : len(names)]
        frame.columns = list(names)[: frame.shape[1]]
    else:
        frame.columns = [str(c).strip() for c in frame.columns]
    for col in required:
        if col not in frame.columns:
            raise DataError(
                f"{path}: missing column {col!r} (columns are: {', '.join(map(str, frame.columns))})"
            )
    frame["_row"] = np.arange(1, len(frame) + 1) + (1 if header else 0)
    return frame


def too_many_fields(name: Any, line: Any, fields: Any, width: Any, header: bool = True) -> DataError:
    """The error for a line with more fields than the header (or the first line) has."""
    first = "the header names" if header else "the first line has"
    return DataError(f"{name}: row {line} has {fields} fields where {first} {width}")


def not_utf8(path: Path) -> DataError | None:
    """The error for the first line of ``path`` that is not UTF-8 (None if every line is),
    read in blocks that end at a line's end. Only called once a reader has failed on it."""
    line = 1
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            block += fh.readline()
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = block[exc.start : exc.end].hex(" ")
                line += block.count(b"\n", 0, exc.start)
                return DataError(f"{path}: row {line} is not UTF-8 (bytes {bad}); save the file as UTF-8 "
                                 "(a Latin-1 or Windows-1252 export is the usual cause)")  # fmt: skip
            line += block.count(b"\n")
    return None


def first_long_line(source: Any, sep: str, width: int, encoding: str, quoting: int) -> tuple[int, int] | None:
    """``(line, fields)`` of the first line after the header with a non-empty field beyond
    ``width``, or None. Python's csv reader, line by line: only called for a file pandas
    warned about."""
    fh = source if isinstance(source, io.StringIO) else open(source, newline="", encoding=encoding)
    try:
        for line, fields in enumerate(csv.reader(fh, delimiter=sep, quoting=quoting), start=1):
            if line > 1 and len(fields) > width and any(f.strip() for f in fields[width:]):
                return line, len(fields)
    finally:
        fh.close()
    return None


def _layout_hint(columns: list[str]) -> str:
    r"""Why a delimited file's header may not be one: another separator, or no header row.

    >>> _layout_hint(["196\t242\t3\t881250949"])
    '; it looks tab-separated (--sep tab); its first row looks like data, not a header (a header row names the columns)'
    >>> _layout_hint(["user", "item"])
    ''
    """
    hints = []
    if len(columns) == 1 and any(sep in columns[0] for sep in "\t;|"):
        sep = next(s for s in "\t;|" if s in columns[0])
        hints.append("it looks tab-separated (--sep tab)" if sep == "\t" else f"it looks {sep!r}-separated (--sep '{sep}')")
    parts = [p for c in columns for p in re.split(r"[\t;|]", c) if p.strip()]
    if parts and all(re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", p) for p in parts):
        hints.append("its first row looks like data, not a header (a header row names the columns)")
    return "".join(f"; {h}" for h in hints)


def repeated_names(header: str, sep: str, quoting: int = csv.QUOTE_MINIMAL) -> dict[str, list[int]]:
    """The names a header line gives more than once, each with its column numbers (from 1).

    >>> repeated_names("user,item,user\\n", ",")
    {'user': [1, 3]}
    """
    named = [c.strip().lstrip("\ufeff") for c in next(csv.reader([header], delimiter=sep, quoting=quoting), [])]
    return {c: [j + 1 for j, d in enumerate(named) if d == c] for c in dict.fromkeys(named) if named.count(c) > 1}


def check_unrepeated(repeated: dict[str, list[int]], columns: Iterable[str], path: Any) -> None:
    """A DataError where a header names one of ``columns`` (columns to be read) more than once
    (``repeated``: :func:`repeated_names`): which of them is meant cannot be told (pandas would
    read the first and call the next ``name.1``, DuckDB ``name_1``)."""
    for c in columns:
        if c in repeated:
            at = repeated[c]
            raise DataError(f"{path}: the header names column {c!r} {len(at)} times (columns "
                            f"{', '.join(map(str, at[:-1]))} and {at[-1]}); rename all but one")  # fmt: skip


def _canonical(frame: pd.DataFrame, mapping: dict[str, str], path: Path) -> pd.DataFrame:
    """Rename source columns to canonical names, remembering the source names for messages."""
    check_unrepeated(frame.attrs.get("repeated", {}), mapping.values(), path)
    missing = [src for src in mapping.values() if src not in frame.columns]
    if missing:
        cols = [str(c) for c in frame.columns if c != "_row"]
        raise DataError(f"{path}: missing column {missing[0]!r} (columns are: {', '.join(cols)}){_layout_hint(cols)}")
    out = pd.DataFrame({canon: frame[src] for canon, src in mapping.items()})
    out["_row"] = frame["_row"].to_numpy() if "_row" in frame else np.arange(1, len(frame) + 1)
    out.attrs["columns"] = dict(mapping)
    return out


# ------------------------------------------------------------------------------ MovieLens
def read_movielens_100k(path: str | os.PathLike, **options: Any) -> Dataset:
    """MovieLens 100K: ``u.data`` ratings, ``u.item`` (latin-1) titles and genres, ``u.user``.

    Args:
        path: the ``ml-100k`` directory.
    """
    root = Path(path)
    if root.is_file():
        root = root.parent
    data = read_delimited(
        root / "u.data", sep="\t", names=("user", "item", "value", "timestamp"),
        required=("user", "item", "value", "timestamp"),
    )  # fmt: skip
    data.attrs["columns"] = {"value": "rating"}
    items = None
    if (root / "u.item").exists():
        cols = ["item", "title", "release_date", "video_release_date", "url", *ML100K_GENRES]
        raw = read_delimited(root / "u.item", sep="|", names=cols, encoding="latin-1",
                             required=cols[:2])  # fmt: skip
        flags = raw[list(ML100K_GENRES)].fillna("0").to_numpy() == "1"
        genres = [", ".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
        dates = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
        items = pd.DataFrame(
            {
                "title": raw["title"].fillna("").to_numpy(),
                "year": dates.dt.year.astype("Int64").to_numpy(),
                "genres": genres,
            },
            index=raw["item"].str.strip().to_numpy(),
        )
    users = None
    if (root / "u.user").exists():
        raw = read_delimited(root / "u.user", sep="|",
                             names=("user", "age", "gender", "occupation", "zip"),
                             required=("user", "age", "gender", "occupation", "zip"))  # fmt: skip
        users = pd.DataFrame(
            {
                "age": pd.to_numeric(raw["age"], errors="coerce").astype("Int64").to_numpy(),
                "gender": raw["gender"].to_numpy(),
                "occupation": raw["occupation"].to_numpy(),
                "zip": raw["zip"].to_numpy(),
            },
            index=raw["user"].str.strip().to_numpy(),
        )
    return build_dataset(
        data, source=str(root / "u.data"), items=items, users=users,
        name=options.get("name") or root.name, text_fields=("title", "genres"),
        tag_fields=("genres",) if items is not None else (),
        default_event="rating", value_range=(1, 5), min_core=options.get("min_core"),
    )  # fmt: skip


def read_movielens(path: str | os.PathLike, **options: Any) -> Dataset:
    """MovieLens "latest"/20M/25M CSVs (ratings, movies, tags) or ML-1M/10M ``::`` .dat files."""
    root = Path(path)
    if root.is_file():
        root = root.parent
    if (root / "ratings.csv").exists():
        ratings = read_delimited(root / "ratings.csv", sep=",", header=True,
                                 required=("userId", "movieId", "rating", "timestamp"))  # fmt: skip
        data = _canonical(ratings, {"user": "userId", "item": "movieId", "value": "rating",
                                    "timestamp": "timestamp"}, root / "ratings.csv")  # fmt: skip
        source = root / "ratings.csv"
        items = None
        if (root / "movies.csv").exists():
            m = read_delimited(root / "movies.csv", sep=",", header=True,
                               required=("movieId", "title", "genres"))  # fmt: skip
            items = pd.DataFrame(
                {"title": m["title"].to_numpy(), "genres": m["genres"].str.replace("|", ", ").to_numpy()},
                index=m["movieId"].to_numpy(),
            )
            if (root / "tags.csv").exists():
                t = read_delimited(root / "tags.csv", sep=",", header=True,
                                   required=("userId", "movieId", "tag"))  # fmt: skip
                tags = t.dropna(subset=["tag"]).groupby("movieId")["tag"].agg(
                    lambda s: ", ".join(pd.unique(s.str.strip()))
                )
                items["tags"] = tags.reindex(items.index).fillna("").to_numpy()
        users = None
        text = ("title", "genres", "tags") if items is not None and "tags" in items else ("title", "genres")
    elif (root / "ratings.dat").exists():
        source = root / "ratings.dat"
        data = read_delimited(source, sep="::", names=("user", "item", "value", "timestamp"),
                              required=("user", "item", "value", "timestamp"))  # fmt: skip
        data.attrs["columns"] = {"value": "rating"}
        items = users = None
        if (root / "movies.dat").exists():
            m = read_delimited(root / "movies.dat", sep="::", names=("item", "title", "genres"),
                               encoding="latin-1", required=("item", "title"))  # fmt: skip
            items = pd.DataFrame(
                {"title": m["title"].to_numpy(), "genres": m["genres"].fillna("").str.replace("|", ", ").to_numpy()},
                index=m["item"].to_numpy(),
            )
        if (root / "users.dat").exists():
            u = read_delimited(root / "users.dat", sep="::",
                               names=("user", "gender", "age", "occupation", "zip"),
                               required=("user", "gender", "age"))  # fmt: skip
            users = u.set_index("user").drop(columns="_row")
        text = ("title", "genres")
    else:
        raise DataError(f"{root}: no ratings.csv or ratings.dat (format 'movielens')")
    return build_dataset(
        data, source=str(source), items=items, users=users,
        name=options.get("name") or root.name, text_fields=text, tag_fields=("genres",) if items is not None else (),
        default_event="rating", value_range=(0.5, 5), min_core=options.get("min_core"),
    )  # fmt: skip


# -------------------------------------------------------------------------------- RecBole
def _recbole_header(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Strip RecBole's ``name:type`` header suffixes."""
    frame.columns = [c.split(":", 1)[0] if c != "_row" else c for c in frame.columns]
    return frame


#: RecBole's column types (``name:type`` headers); ``float`` columns are numbers, the rest text.
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def typed_attributes(frame: pd.DataFrame, path: Path, infer: bool, keep: Sequence[str] = ()) -> pd.DataFrame:
    """An attribute table read as text, with its numeric columns as numbers (``_row`` kept).

    A column headed ``name:float`` (RecBole's annotation, also read in CSV headers) is numeric:
    a value that is not a number is an error naming the file, row and column. ``name:token``
    and ``name:token_seq`` stay text. The annotation leaves the name. With ``infer`` (CSV and
    TSV files, whose cells carry no type), an unannotated column whose every value is a
    number is numeric too, as pandas would read it, except codes written with a leading zero
    (``02139``), which stay text. Columns in ``keep`` (ids, text fields) stay as they are.
    Typed columns (Parquet) are left alone, except dates, which become unix seconds as a
    log's timestamps do (a network reads them as one number; before, each date was a
    category of its own).

    >>> t = pd.DataFrame({"price": ["1.5", None, "10"], "zip": ["02139", "10001", None],
    ...                   "size:float": ["3", "4", "5"], "code:token": ["7", "8", "9"], "_row": [2, 3, 4]})
    >>> typed = typed_attributes(t, Path("items.csv"), infer=True)
    >>> [c for c in typed if pd.api.types.is_numeric_dtype(typed[c])], typed["price"].tolist()
    (['price', 'size', '_row'], [1.5, nan, 10.0])
    >>> typed["size"].tolist()
    [3, 4, 5]
    """
    out = {}
    for col in frame.columns:
        s = frame[col]
        name, _, kind = str(col).partition(":")
        if kind not in RECBOLE_TYPES:
            name, kind = str(col), ""
        textual = pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)
        if pd.api.types.is_datetime64_any_dtype(s) and col not in keep:
            out[name] = parse_timestamps(s)
            continue
        if col == "_row" or col in keep or name in keep or not textual:
            out[col if col in keep else name] = s
            continue
        text = s.astype("string").str.strip()
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = (num.isna() & text.notna() & (text != "")).fillna(False).astype(bool)  # a value, not a number
        if kind == "float" and bad.any():
            j = int(np.argmax(bad.to_numpy()))
            row = frame["_row"].iloc[j] if "_row" in frame else j + 1
            raise DataError(f"{path}: row {row}, column {str(col)!r}: {s.iloc[j]!r} is not a number")
        numeric = kind == "float" or (
            infer and not kind and text.notna().any() and not bad.any() and not text.str.match(r"^[+-]?0\d").any()
        )
        if numeric and (num.dropna() % 1 == 0).all():
            num = num.astype("Int64")  # whole numbers stay whole (a year is 1999, not 1999.0)
        out[name] = num if numeric else s
    return pd.DataFrame(out, index=frame.index)


def _index_map(path: Path) -> dict[str, str] | None:
    """UniSRec's ``*.item2index`` / ``*.user2index``: original id -> integer index."""
    if not path.exists():
        return None
    m = read_delimited(path, sep="\t", names=("id", "index"), required=("id", "index"))
    return dict(zip(m["index"].str.strip(), m["id"].str.strip()))


def read_recbole(path: str | os.PathLike, **options: Any) -> Dataset:
    """RecBole atomic files: ``*.inter`` (plain or UniSRec sequence form), ``*.item``, ``*.user``, ``*.text``.

    Plain ``.inter`` files have ``user_id:token item_id:token [rating:float] [timestamp:float]``.
    UniSRec's sequence form (``user_id:token item_id_list:token_seq item_id:token``) holds one
    row per prefix; each user's longest sequence is kept and its positions become the
    timestamps (``timestamp_kind="order"``). ``*.item2index``/``*.user2index`` map integer
    indices back to the original ids.
    """
    root = Path(path)
    inter_files = [root] if root.is_file() else sorted(root.glob("*.inter"))
    if root.is_file():
        root = root.parent
    if not inter_files:
        raise DataError(f"{root}: no *.inter file (format 'recbole')")
    frames = []
    for f in inter_files:
        fr = _recbole_header(read_delimited(f, sep="\t", header=True), f)
        if "user_id" not in fr.columns:
            raise DataError(f"{f}: missing column 'user_id:token' (RecBole header)")
        if "item_id" not in fr.columns:
            raise DataError(f"{f}: missing column 'item_id:token' (RecBole header)")
        fr["_file"] = f.name
        frames.append(fr)
    raw = pd.concat(frames, ignore_index=True)
    stem = inter_files[0].name.split(".")[0]
    item_map = _index_map(root / f"{stem}.item2index")
    user_map = _index_map(root / f"{stem}.user2index")
    kind = "unix"
    if "item_id_list" in raw.columns:
        seq = raw["item_id_list"].fillna("").str.split() + raw["item_id"].map(lambda x: [x])
        raw = raw.assign(_seq=seq, _len=seq.map(len))
        best = raw.sort_values("_len", kind="stable").drop_duplicates("user_id", keep="last")
        exploded = best[["user_id", "_seq", "_row"]].explode("_seq")
        exploded["timestamp"] = exploded.groupby(level=0).cumcount().to_numpy()
        data = pd.DataFrame(
            {
                "user": exploded["user_id"].to_numpy(),
                "item": exploded["_seq"].to_numpy(),
                "timestamp": exploded["timestamp"].to_numpy(),
                "_row": exploded["_row"].to_numpy(),
            }
        )
        # Positions repeat a purchase legitimately; make them distinct events, not duplicates.
        kind = "order"
    else:
        mapping = {"user": "user_id", "item": "item_id"}
        for canon, col in (("value", "rating"), ("timestamp", "timestamp"), ("event", "event")):
            if col in raw.columns:
                mapping[canon] = col
        data = _canonical(raw, mapping, inter_files[0])
        if "timestamp" not in mapping:
            kind = "none"
    if item_map:
        data["item"] = data["item"].astype(str).str.strip().map(item_map).fillna(data["item"])
    if user_map:
        data["user"] = data["user"].astype(str).str.strip().map(user_map).fillna(data["user"])

    items = None
    text_fields: list[str] = []
    for suffix in ("item", "text"):
        f = root / f"{stem}.{suffix}"
        if f.exists():
            t = typed_attributes(read_delimited(f, sep="\t", header=True), f, infer=False)
            if "item_id" not in t.columns:
                raise DataError(f"{f}: missing column 'item_id:token' (RecBole header)")
            t = t.drop(columns="_row").drop_duplicates("item_id").set_index("item_id")
            items = t if items is None else items.join(t, how="outer")
            text_fields += [c for c in t.columns if c in ("text", "title", "movie_title", "description")
                            or c.endswith("_title")]  # fmt: skip
    users = None
    f = root / f"{stem}.user"
    if f.exists():
        u = typed_attributes(read_delimited(f, sep="\t", header=True), f, infer=False)
        users = u.drop(columns="_row").drop_duplicates("user_id").set_index("user_id")
    has_rating = "value" in data.columns
    return build_dataset(
        data, source=str(inter_files[0] if len(inter_files) == 1 else root / f"{stem}.*.inter"),
        items=items, users=users, name=options.get("name") or stem,
        text_fields=tuple(text_fields), default_event="rating" if has_rating else "interaction",
        timestamp_kind=kind, min_core=options.get("min_core"),
    )  # fmt: skip


# --------------------------------------------------------------------------------- Taobao
def read_taobao(path: str | os.PathLike, **options: Any) -> Dataset:
    """Taobao UserBehavior.csv: ``user,item,category,behavior,timestamp`` with no header.

    Behaviours (pv, cart, fav, buy) become event types; the item's category an attribute.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "UserBehavior.csv"
    names = ("user", "item", "category", "event", "timestamp")
    raw = read_delimited(p, sep=",", names=names, required=names)
    raw.attrs["columns"] = {"event": "behavior_type"}
    cats = raw[["item", "category"]].dropna().drop_duplicates("item").set_index("item")
    return build_dataset(
        raw.drop(columns="category"), source=str(p), items=cats,
        name=options.get("name") or p.parent.name, default_event="pv",
        min_core=options.get("min_core"),
    )  # fmt: skip


# ------------------------------------------------------------------------ CSV / Parquet
def parse_mapping(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"user=userId,item=movieId"`` -> ``{"user": "userId", "item": "movieId"}``."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    out = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(f"column mapping {part!r}: expected canonical=source, e.g. user=userId")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


CANONICAL = ("user", "item", "event", "value", "timestamp")


def _read_any(path: Path, sep: str = ",") -> pd.DataFrame:
    if path.suffix in (".parquet", ".pq"):
        need_file(path)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
        if len(frame) == 0:
            raise DataError(f"{path}: the file has no rows")
        frame = frame.reset_index(drop=True)
        frame["_row"] = np.arange(1, len(frame) + 1)
        return frame
    return read_delimited(path, sep="\t" if path.suffix in (".tsv", ".tab") else sep, header=True)


def check_ids_apart(mapping: dict[str, str]) -> None:
    """A ConfigError where a column mapping reads users and items from one column."""
    if mapping["user"] == mapping["item"]:
        raise ConfigError(f"column mapping: user and item both read column {mapping['user']!r}")


def warn_unread(source: Any, present: Iterable[Any], read: Iterable[str]) -> None:
    """Warn about a log's columns that no canonical name reads (said, not dropped silently:
    a ``rating`` column is not the values unless ``--columns value=rating`` names it)."""
    used = set(read)
    unread = [str(c) for c in present if c not in used and c != "_row"]
    if unread:
        hint = next((f"value={c}" for c in unread if c.lower() in ("rating", "ratings", "score", "count")), "value=rating")
        log.warning("%s: column(s) not read: %s (name them with --columns, e.g. %s; canonical names: %s)",
                    source, ", ".join(unread), hint, ", ".join(CANONICAL))  # fmt: skip


def read_table(
    path: str | os.PathLike,
    *,
    columns: str | dict[str, str] | None = None,
    items: str | os.PathLike | None = None,
    item_columns: str | dict[str, str] | None = None,
    users: str | os.PathLike | None = None,
    user_columns: str | dict[str, str] | None = None,
    text_fields: Sequence[str] | str = (),
    value_range: tuple[float, float] | None = None,
    sep: str = ",",
    time_unit: str = "s",
    **options: Any,
) -> Dataset:
    """Any CSV/TSV/Parquet log, with a mapping from canonical to source column names.

    Args:
        columns: e.g. ``"user=userId,item=movieId,value=rating,timestamp=ts,event=type"``;
            canonical names default to themselves, ``user`` and ``item`` are required.
        items / users: optional attribute files; ``item_columns="item=movieId"`` names
            their id column (default ``item`` / ``user``, or else the log's own id column as
            ``columns`` names it, when the file has it); every other column is an attribute.
        text_fields: item columns holding text (comma-separated string or list).
        time_unit: the unit of numeric timestamps: ``s`` (default), ``ms``, ``us`` or ``ns``.
    """
    p = Path(path)
    frame = _read_any(p, sep)
    mapping = parse_mapping(columns)
    unknown = set(mapping) - set(CANONICAL)
    if unknown:
        raise ConfigError(f"column mapping: unknown canonical name(s) {sorted(unknown)}; use {CANONICAL}")
    full = {c: mapping.get(c, c) for c in CANONICAL if c in mapping or c in frame.columns}
    for c in ("user", "item"):
        full.setdefault(c, c)
    check_ids_apart(full)
    data = _canonical(frame, full, p)
    warn_unread(p, frame.columns, full.values())

    tf = [s.strip() for s in text_fields.split(",")] if isinstance(text_fields, str) else list(text_fields)
    tf = [f for f in tf if f]
    if tf and items is None:
        raise ConfigError(f"text fields {', '.join(tf)}: they name columns of an item file, and none was given (--items)")

    def table(file: Any, spec: Any, key: str) -> pd.DataFrame | None:
        """An attribute file indexed by its id column, its numeric columns as numbers."""
        if file is None:
            return None
        f = Path(file)
        t = _read_any(f, sep)
        named = parse_mapping(spec)
        id_col = named.get(key, key)
        if key not in named and key not in t.columns and full[key] in t.columns:
            id_col = full[key]  # the log's own name for the id (MovieLens: movieId in both files)
        if id_col not in t.columns:
            raise DataError(f"{f}: missing id column {id_col!r} (columns are: {', '.join(c for c in t.columns if c != '_row')}); "
                            f"name it with --{key}-columns {key}=COLUMN")  # fmt: skip
        check_unrepeated(t.attrs.get("repeated", {}), (id_col, *tf), f)
        t = typed_attributes(t, f, infer=True, keep=(id_col, *tf))
        repeat = t[id_col].duplicated(keep="first").to_numpy()
        if repeat.any():  # said, not kept silently: the first row of an id is the one used
            first = t.loc[repeat].iloc[0]
            log.warning("%s: %d row(s) repeat an id given above (e.g. %s %r on row %s); the first row of each id is kept",
                        f, int(repeat.sum()), id_col, first[id_col], first["_row"])
        return t.drop(columns="_row").set_index(id_col)

    item_table = table(items, item_columns, "item")
    if item_table is not None:
        missing = [f for f in tf if f not in item_table.columns]
        if missing:
            raise DataError(f"{items}: missing text column {missing[0]!r}")
    return build_dataset(
        data, source=str(p), items=item_table, users=table(users, user_columns, "user"),
        name=options.get("name") or p.stem, text_fields=tf, value_range=value_range,
        min_core=options.get("min_core"), default_event=options.get("default_event", "interaction"),
        time_unit=time_unit,
    )  # fmt: skip


def read_synthetic(path: str | os.PathLike, **options: Any) -> Dataset:
    """A synthetic world written by :func:`metarec.data.synthetic.write_world`."""
    root = Path(path)
    return read_table(
        root / "events.csv",
        columns="user=user,item=item,event=event,value=value,timestamp=timestamp",
        items=root / "items.csv", users=root / "users.csv", text_fields="title,description",
        name=options.get("name") or "synthetic", min_core=options.get("min_core"),
    )  # fmt: skip


READERS: dict[str, Callable[..., Dataset]] = {
    "movielens-100k": read_movielens_100k,
    "movielens": read_movielens,
    "recbole": read_recbole,
    "taobao": read_taobao,
    "csv": read_table,
    "parquet": read_table,
    "synthetic": read_synthetic,
}


def load_dataset(path: str | os.PathLike, format: str, **options: Any) -> Dataset:
    """Read a data set with the reader registered for ``format``.

    Raises:
        ConfigError: the format is unknown.
        DataError: the files are missing or malformed (the message names file, row, column).
    """
    try:
        reader = READERS[format]
    except KeyError:
        raise ConfigError(f"unknown format {format!r}; choose one of: {', '.join(READERS)}") from None
    if not Path(path).exists():
        raise DataError(f"{path}: no such file or directory")
    return reader(path, **{k: v for k, v in options.items() if v is not None})
