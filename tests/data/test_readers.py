"""Readers on small files written here, in each format's real layout."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metarec.data import load_dataset
from metarec.errors import ConfigError, DataError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


@pytest.fixture
def ml100k(tmp_path):
    root = tmp_path / "ml-100k"
    write(root / "u.data", "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n2\t3\t9\t888550872\n")
    genres = "|".join(["0"] * 19)
    flags = ["0"] * 19
    flags[3] = flags[4] = flags[5] = "1"
    write(
        root / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{'|'.join(flags)}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://x|{genres}\n"
        f"3|Café Society (1995)|01-Jan-1995||http://x|{genres}\n",
        encoding="latin-1",
    )
    write(root / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    return root


def test_movielens_100k(ml100k):
    d = load_dataset(ml100k, "movielens-100k")
    assert (d.n_users, d.n_items, d.n_interactions) == (2, 3, 3)
    assert d.event_types == ["rating"]
    assert d.items.loc[0, "genres"] == "Animation, Children's, Comedy"
    assert d.items.loc[2, "title"] == "Café Society (1995)"  # latin-1 decoded
    assert d.users["gender"].tolist() == ["M", "F"]
    assert d.reports[0].to_dict()["dropped"] == {"value out of range": {"count": 1, "example_rows": [4]}}
    assert d.item_text()[0] == "Toy Story (1995). Animation, Children's, Comedy"
    assert d.tag_fields == ("genres",)  # lists of genres: iALS's tags by default
    (ml100k / "u.item").unlink()  # ratings alone: no genres to declare
    assert load_dataset(ml100k, "movielens-100k").tag_fields == ()


def test_movielens_latest_csv_with_tags(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,100\n2,10,0.5,101\n2,20,3,102\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n10,"Heat (1995)",Action|Crime\n20,Up (2009),Animation\n')
    write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n1,10,heist,5\n2,10,heist,6\n2,10, Pacino,7\n")
    d = load_dataset(tmp_path, "movielens")
    assert d.n_interactions == 3 and d.items.loc[0, "genres"] == "Action, Crime"
    assert d.items.loc[0, "tags"] == "heist, Pacino" and "tags" in d.text_fields
    assert d.tag_fields == ("genres",)  # users' free tags are text, not a small vocabulary


def test_movielens_1m_dat(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James (1996)::Animation|Musical\n", encoding="latin-1")
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    d = load_dataset(tmp_path, "movielens")
    assert (d.n_users, d.n_items, d.n_interactions) == (2, 2, 3)
    assert d.users["gender"].tolist() == ["F", "M"]


def test_recbole_unisrec_sequences_with_index_maps(tmp_path):
    write(tmp_path / "S.train.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0\t1\n0\t0 1\t2\n1\t2\t0\n")
    write(tmp_path / "S.test.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 1 2\t1\n1\t2 0\t1\n")
    write(tmp_path / "S.text", 'item_id:token\ttext:token_seq\nA1\tGlue "extra strong"\nA2\tBeaker\nA3\tScale\n')
    write(tmp_path / "S.item2index", "A1\t0\nA2\t1\nA3\t2\n")
    write(tmp_path / "S.user2index", "R1\t0\nR2\t1\n")
    d = load_dataset(tmp_path, "recbole")
    assert d.timestamp_kind == "order" and d.text_fields == ("text",)
    seqs = d.interactions.sort_values(["user", "timestamp"]).groupby("user")["item"].apply(list)
    assert [list(d.item_ids[s]) for s in seqs] == [["A1", "A2", "A3", "A2"], ["A3", "A1", "A2"]]
    assert d.user_ids.tolist() == ["R1", "R2"]
    assert d.item_text()[0] == 'Glue "extra strong"'


def test_recbole_plain_atomic(tmp_path):
    write(tmp_path / "m.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t5\t4\t10\n1\t6\t2\t11\n")
    write(tmp_path / "m.item", "item_id:token\tmovie_title:token_seq\n5\tHeat\n6\tUp\n")
    d = load_dataset(tmp_path, "recbole")
    assert d.event_types == ["rating"] and d.interactions["value"].tolist() == [4.0, 2.0]
    assert d.text_fields == ("movie_title",)


def test_taobao(tmp_path):
    f = write(tmp_path / "UserBehavior.csv", "1,100,7,pv,1511658000\n1,100,7,buy,1511658001\n2,200,8,cart,1511658002\n2,200,8,cart,1511658002\n")
    d = load_dataset(f, "taobao")
    assert sorted(d.event_types) == ["buy", "cart", "pv"]
    assert d.items["category"].tolist() == ["7", "8"]
    assert d.reports[0].to_dict()["dropped"]["duplicate"]["count"] == 1


def test_csv_and_parquet_with_mapping(tmp_path):
    f = write(tmp_path / "log.csv", "who,what,kind,ts\nalice,B01,click,2021-05-01\nbob,B02,buy,2021-05-02\n")
    write(tmp_path / "items.csv", "sku,name\nB01,Red kettle\nB02,Blue tent\nB03,Green lamp\n")
    d = load_dataset(f, "csv", columns="user=who,item=what,event=kind,timestamp=ts",
                     items=tmp_path / "items.csv", item_columns="item=sku", text_fields="name")
    assert d.n_items == 3 and d.event_types == ["buy", "click"] and d.item_text()[2] == "Green lamp"
    pd.read_csv(f).to_parquet(tmp_path / "log.parquet")
    d2 = load_dataset(tmp_path / "log.parquet", "parquet", columns="user=who,item=what,event=kind,timestamp=ts")
    assert d2.n_interactions == 2


def test_a_parquet_date_attribute_is_unix_seconds_as_a_timestamp_is(tmp_path):
    """A release date in a Parquet item file reaches the networks as one number, as the
    synthetic world's ``released`` (seconds) does; it was a category per date."""
    write(tmp_path / "log.csv", "user,item\nu1,a\nu2,b\n")
    pd.DataFrame({"item": ["a", "b"], "released": pd.to_datetime(["1970-01-02", None])}).to_parquet(tmp_path / "items.parquet")
    d = load_dataset(tmp_path / "log.csv", "csv", items=tmp_path / "items.parquet")
    released = d.items.set_index(pd.Index(d.item_ids))["released"]
    assert pd.api.types.is_float_dtype(released) and released["a"] == 86400.0 and np.isnan(released["b"])


def test_an_attribute_file_takes_the_logs_id_column_name_or_says_how_to_name_it(tmp_path):
    """MovieLens's ratings.csv and movies.csv both call the item movieId: the mapping of the
    log names the items file's id too, unless the file has an ``item`` column or
    ``item_columns`` says otherwise. A file with neither is an error that says what to pass."""
    f = write(tmp_path / "ratings.csv", "userId,movieId,rating\n1,10,5\n2,20,3\n")
    write(tmp_path / "movies.csv", "movieId,title\n10,Heat\n20,Alien\n30,Up\n")
    d = load_dataset(f, "csv", columns="user=userId,item=movieId,value=rating", items=tmp_path / "movies.csv",
                     text_fields="title")  # fmt: skip
    assert d.n_items == 3 and d.item_text()[list(d.item_ids).index("20")] == "Alien"
    write(tmp_path / "other.csv", "sku,title\n10,Heat\n")
    with pytest.raises(DataError, match=r"other\.csv: missing id column 'item' \(columns are: sku, title\); "
                                        r"name it with --item-columns item=COLUMN"):  # fmt: skip
        load_dataset(f, "csv", columns="user=userId,item=movieId", items=tmp_path / "other.csv")


def test_a_parquet_date_column_is_read_as_a_date_not_as_a_count(tmp_path):
    """Parquet stores a timestamp as a typed date (``datetime64``), which pandas turns into
    microseconds or nanoseconds as a number: before, that was refused as "after the year
    9999 as unix seconds". Naive dates are UTC, aware ones are converted, and ``--time-unit``
    (for numbers) does not touch them."""
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"],
                          "ts": pd.to_datetime(["2024-01-01 00:00:00", "2024-01-02 12:00:00"])})  # fmt: skip
    frame.to_parquet(tmp_path / "log.parquet")
    for unit in ("s", "ms"):
        d = load_dataset(tmp_path / "log.parquet", "parquet", columns="timestamp=ts", time_unit=unit)
        assert sorted(d.interactions["timestamp"].tolist()) == [1704067200.0, 1704196800.0]
    frame["ts"] = frame["ts"].dt.tz_localize("Europe/Berlin")  # 1 hour ahead of UTC in winter
    frame.to_parquet(tmp_path / "log.parquet")
    d = load_dataset(tmp_path / "log.parquet", "parquet", columns="timestamp=ts")
    assert sorted(d.interactions["timestamp"].tolist()) == [1704063600.0, 1704193200.0]


def test_an_attribute_file_repeating_an_id_is_said_and_its_first_row_kept(tmp_path, caplog):
    f = write(tmp_path / "log.csv", "user,item\nalice,a\nbob,b\n")
    items = write(tmp_path / "items.csv", "item,title\na,First\nb,Other\na,Second\n")
    d = load_dataset(f, "csv", items=items, text_fields="title")
    assert d.item_text() == ["First", "Other"]
    assert "items.csv: 1 row(s) repeat an id given above (e.g. item 'a' on row 4)" in caplog.text


def test_a_column_the_mapping_does_not_read_is_said_not_dropped_silently(tmp_path, caplog):
    f = write(tmp_path / "log.csv", "user,item,rating,ts\nalice,B01,5,1\nbob,B02,2,2\n")
    d = load_dataset(f, "csv")
    assert d.interactions["value"].tolist() == [1.0, 1.0]
    assert "log.csv: column(s) not read: rating, ts" in caplog.text and "value=rating" in caplog.text
    caplog.clear()
    d = load_dataset(f, "csv", columns="value=rating,timestamp=ts")
    assert d.interactions["value"].tolist() == [5.0, 2.0] and "not read" not in caplog.text


@pytest.mark.parametrize(
    "files, fmt, message",
    [
        ({"u.data": ""}, "movielens-100k", r"u\.data: the file is empty"),
        ({"u.data": "1\t2\t3\n"}, "movielens-100k", r"missing column 'timestamp'"),
        ({"u.data": "1\t2\tfive\t100\n"}, "movielens-100k", r"row 1, column value \('rating'\): 'five' is not a number"),
        ({"log.csv": "user,item\n"}, "csv", r"header but no rows"),
        ({"log.csv": "user,thing\na,b\n"}, "csv", r"missing column 'item'"),
        # One field too many on the first data line: pandas took the first column as an index,
        # and every column shifted (the users were read as items, without a word).
        ({"log.csv": "user,item\na,b,c\nd,e\n"}, "csv", r"log\.csv: row 2 has 3 fields where the header names 2"),
        ({"log.csv": "user,item\na,b\nd,e,f\n"}, "csv", r"log\.csv: row 3 has 3 fields where the header names 2"),
    ],
)
def test_bad_input_names_the_problem(tmp_path, files, fmt, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    target = tmp_path / next(iter(files)) if fmt == "csv" else tmp_path
    with pytest.raises(DataError, match=message):
        load_dataset(target, fmt)


def test_a_directory_given_for_a_csv_log_or_attribute_file_is_named_as_one(tmp_path):
    """The parser's own words were "Is a directory", without saying what was wanted."""
    log = write(tmp_path / "log.csv", "user,item\nu1,i1\n")
    (tmp_path / "exports").mkdir()
    for kwargs, target in (({}, tmp_path / "exports"), ({"items": tmp_path / "exports"}, log)):
        with pytest.raises(DataError, match=r"exports: is a directory, not a data file; give the file itself"):
            load_dataset(target, "csv", **kwargs)


def test_a_delimiter_at_the_end_of_each_data_line_shifts_no_column(tmp_path):
    """Exports that end every data line with the separator (and not the header) were read with
    the users as items and the ratings as users; the empty extra fields are now dropped."""
    f = write(tmp_path / "log.csv", "user,item,rating\nu1,i1,5,\nu2,i1,4,\nu2,i2,3,\n")
    d = load_dataset(f, "csv", columns="value=rating")
    assert sorted(d.user_ids) == ["u1", "u2"] and sorted(d.item_ids) == ["i1", "i2"]
    assert sorted(d.interactions["value"].tolist()) == [3.0, 4.0, 5.0]


def test_a_file_that_is_not_utf8_names_its_first_bad_row(tmp_path):
    """A Latin-1 export: pandas's message gave a byte position within its buffer, not the row."""
    f = tmp_path / "log.csv"
    f.write_bytes(b"user,item\n" + b"u,i\n" * 5000 + "u,café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"log\.csv: row 5002 is not UTF-8 \(bytes e9\); save the file as UTF-8"):
        load_dataset(f, "csv")


def test_an_attribute_file_that_names_its_id_or_a_text_field_twice_is_refused(tmp_path):
    log = write(tmp_path / "log.csv", "user,item\nu1,i1\n")
    items = write(tmp_path / "items.csv", "item,title,title\ni1,A,B\n")
    with pytest.raises(DataError, match=r"items\.csv: the header names column 'title' 2 times \(columns 2 and 3\)"):
        load_dataset(log, "csv", items=items, text_fields="title")
    assert load_dataset(log, "csv", items=items).n_items == 1  # not read as text: attributes title, title.1


def test_a_mapping_that_cannot_mean_what_it_says_is_refused(tmp_path):
    """Both were read without a word before: users that were also the items, and text fields
    with no item file to hold them (a hybrid then had no text at all)."""
    f = write(tmp_path / "log.csv", "user,item\nu1,i1\nu2,i2\n")
    with pytest.raises(ConfigError, match="column mapping: user and item both read column 'user'"):
        load_dataset(f, "csv", columns="item=user")
    with pytest.raises(ConfigError, match=r"text fields title: .*none was given \(--items\)"):
        load_dataset(f, "csv", text_fields="title")


def test_unknown_format(tmp_path):
    with pytest.raises(ConfigError, match="unknown format 'excel'"):
        load_dataset(tmp_path, "excel")


def test_attribute_files_keep_their_numbers_as_numbers(tmp_path):
    """CSV cells carry no type: a column of numbers is numeric (a price, an age), as pandas
    reads it, but ids, text fields and codes with a leading zero stay text; RecBole's
    ``name:float`` headers are numeric in both, and a value that is not a number is an error
    naming the file, row and column."""
    f = write(tmp_path / "log.csv", "user,item\n01,007\n02,008\n")
    write(tmp_path / "items.csv", "sku,name,price,year,zip,weight:float,code:token\n"
                                  "007,Kettle,12.5,1999,02139,1.5,10\n008,Tent,,2001,10001,2,11\n")  # fmt: skip
    write(tmp_path / "users.csv", "user,age,gender\n01,24,M\n02,53,F\n")
    d = load_dataset(f, "csv", items=tmp_path / "items.csv", item_columns="item=sku", text_fields="name",
                     users=tmp_path / "users.csv")  # fmt: skip
    items, users = d.items.set_index(pd.Index(d.item_ids)), d.users.set_index(pd.Index(d.user_ids))
    numeric = [c for c in items if pd.api.types.is_numeric_dtype(items[c])]
    assert numeric == ["price", "year", "weight"] and list(items.columns) == ["name", "price", "year", "zip", "weight", "code"]
    assert items.loc["007", "price"] == 12.5 and pd.isna(items.loc["008", "price"]) and items.loc["007", "zip"] == "02139"
    assert list(d.item_ids) == ["007", "008"] and users.loc["02", "age"] == 53
    write(tmp_path / "items.csv", "sku,weight:float\n007,1.5\n008,heavy\n")
    with pytest.raises(DataError, match=r"items\.csv: row 3, column 'weight:float': 'heavy' is not a number"):
        load_dataset(f, "csv", items=tmp_path / "items.csv", item_columns="item=sku")
    # RecBole: the annotation decides, nothing is inferred.
    write(tmp_path / "rb" / "m.inter", "user_id:token\titem_id:token\n1\t5\n1\t6\n")
    write(tmp_path / "rb" / "m.item", "item_id:token\tprice:float\tyear:token\n5\t9.5\t1999\n6\t3\t2001\n")
    rb = load_dataset(tmp_path / "rb", "recbole")
    assert pd.api.types.is_numeric_dtype(rb.items["price"]) and rb.items["price"].tolist() == [9.5, 3.0]
    assert rb.items["year"].tolist() == ["1999", "2001"]


def test_a_synthetic_world_read_back_from_csv_has_the_types_it_was_made_with(tmp_path):
    from metarec.data.synthetic import WorldConfig, make_world, write_world

    config = WorldConfig(n_users=30, n_items=20, seed=3)
    made, read = make_world(config), load_dataset(write_world(tmp_path / "w", config), "synthetic")
    for a, b in ((made.items, read.items), (made.users, read.users)):
        assert list(a.columns) == list(b.columns)
        assert [pd.api.types.is_numeric_dtype(a[c]) for c in a] == [pd.api.types.is_numeric_dtype(b[c]) for c in b]


def test_a_synthetic_world_replaces_an_earlier_one_but_not_a_users_own_files(tmp_path):
    from metarec.data.synthetic import WorldConfig, write_world
    from metarec.errors import ConfigError

    write_world(tmp_path / "w", WorldConfig(n_users=30, n_items=20, seed=3))
    write_world(tmp_path / "w", WorldConfig(n_users=40, n_items=20, seed=3))  # a rerun (the demo's too)
    assert pd.read_csv(tmp_path / "w" / "users.csv")["user"].nunique() == 40
    own = tmp_path / "own"
    own.mkdir()
    (own / "items.csv").write_text("movieId,title\n1,Heat\n")
    with pytest.raises(ConfigError, match=r"items\.csv: not a synthetic world's items\.csv .*'movieId,title'"):
        write_world(own, WorldConfig(n_users=30, n_items=20, seed=3))
    assert sorted(p.name for p in own.iterdir()) == ["items.csv"]  # nothing written, nothing lost
    assert (own / "items.csv").read_text() == "movieId,title\n1,Heat\n"
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="a file is there"):
        write_world(tmp_path / "f", WorldConfig(n_users=30, n_items=20, seed=3))
