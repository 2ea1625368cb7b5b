import gzip
from pathlib import Path

import pandas as pd
import pytest

from rece_bench.data import parse
from rece_bench.data.parse import Columns, detect_format
from rece_bench.errors import UserError
from tests.data import BEAUTY_SAMPLE, GOWALLA_SAMPLE, shared_file


def write(path: Path, text: str, compress: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def triples(result: parse.ParseResult) -> list[tuple[str, str, int]]:
    frame = result.frame
    return [(result.users[u], result.items[i], int(t)) for u, i, t in frame.itertuples(index=False)]


GOWALLA = "0\t2010-10-19T23:55:27Z\t30.2\t-97.7\t22847\n0\t2010-10-18T22:17:43Z\t30.2\t-97.7\t420315\n"


def test_gowalla_reads_iso_times_as_utc(tmp_path):
    result = parse.parse_gowalla(write(tmp_path / "g.txt.gz", GOWALLA, compress=True))
    assert triples(result) == [("0", "22847", 1287532527), ("0", "420315", 1287440263)]
    assert result.malformed_lines == 0


def test_behance_keeps_leading_zeros_and_sniffs_gzip_whatever_the_name(tmp_path):
    text = "00012 0345 1300000000\n00012 0346 1300000100\n"
    for path in (write(tmp_path / "plain.gz", text), write(tmp_path / "packed.txt", text, compress=True)):
        assert triples(parse.parse_behance(path)) == [
            ("00012", "0345", 1300000000),
            ("00012", "0346", 1300000100),
        ]


def test_amazon_csv_item_first_and_user_first(tmp_path):
    path = write(tmp_path / "k.csv", "B001,A9,5.0,1400000000\nB002,A9,4.0,1400086400\n")
    assert triples(parse.parse_amazon_csv_item_first(path))[0] == ("A9", "B001", 1400000000)
    assert triples(parse.parse_amazon_csv_user_first(path))[0] == ("B001", "A9", 1400000000)


def test_amazon_json_lines(tmp_path):
    text = '{"reviewerID": "A1", "asin": "X", "unixReviewTime": 1390000000, "overall": 5}\n'
    assert triples(parse.parse_amazon_json(write(tmp_path / "b.json", text))) == [("A1", "X", 1390000000)]


def test_beer_dict_literal_skips_reviews_without_user(tmp_path):
    text = (
        "{'beer/beerId': '47986', 'review/profileName': 'stcules', 'review/time': '1234817823', "
        "'x': 'it''s'}\n"
        "{'beer/beerId': '48213', 'review/time': '1235915097'}\n"
        "{'beer/beerId': '48213', 'review/profileName': 'johnmichaelsen', 'review/time': '1235915097'}\n"
    )
    text = text.replace("'it''s'", '"it\'s"')
    result = parse.parse_beer_dict(write(tmp_path / "beer.json", text))
    assert triples(result) == [("stcules", "47986", 1234817823), ("johnmichaelsen", "48213", 1235915097)]
    assert (result.skipped_rows, result.malformed_lines) == (1, 0)


def test_beer_kaggle_csv_quoted_commas_and_empty_users(tmp_path):
    text = (
        "brewery_id,brewery_name,review_time,review_overall,review_profilename,beer_beerid\n"
        '10325,"Vecchio Birraio, Inc",1234817823,1.5,stcules,47986\n'
        '10325,"Vecchio Birraio",1234818000,3.0,,48213\n'
        "1075,Caldera,1293735206,4.0,johnmichaelsen,52159\n"
    )
    result = parse.parse_beer_csv(write(tmp_path / "beer_reviews.csv", text))
    assert triples(result) == [("stcules", "47986", 1234817823), ("johnmichaelsen", "52159", 1293735206)]
    assert result.skipped_rows == 1


def test_sequence_file_uses_positions_as_time(tmp_path):
    result = parse.parse_sequence(write(tmp_path / "seq.txt", "1 5 6 7\n2 6 8\n"))
    assert triples(result) == [("1", "5", 0), ("1", "6", 1), ("1", "7", 2), ("2", "6", 0), ("2", "8", 1)]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_custom_tables(tmp_path, fmt):
    frame = pd.DataFrame({"u": ["a", "a", "b"], "i": ["x", "y", "x"], "t": [3, 1, 2]})
    path = tmp_path / f"data.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    result = parse.TABLE_PARSERS[parse.table_format(path)](path, Columns("u", "i", "t"))
    assert triples(result) == [("a", "x", 3), ("a", "y", 1), ("b", "x", 2)]


def test_custom_iso_times_and_parquet_timestamps(tmp_path):
    path = write(tmp_path / "d.csv", "u,i,t\na,x,2010-10-19T23:55:27Z\na,y,2010-10-19 23:55:28\n")
    assert [t for *_, t in triples(parse.parse_csv(path, Columns("u", "i", "t")))] == [1287532527, 1287532528]
    frame = pd.DataFrame({"u": [1], "i": [2], "t": pd.to_datetime(["2010-10-19T23:55:27Z"])})
    frame.to_parquet(tmp_path / "d.parquet")
    assert triples(parse.parse_parquet(tmp_path / "d.parquet", Columns("u", "i", "t"))) == [("1", "2", 1287532527)]


def test_malformed_lines_are_counted_or_with_strict_an_error(tmp_path):
    path = write(tmp_path / "b.txt", "u1 i1 100\nbroken line\nu1 i2 not-a-time\nu2 i1 200\n")
    result = parse.parse_behance(path)
    assert (result.interactions, result.malformed_lines) == (2, 2)
    assert result.first_malformed.startswith("line 2:")
    with pytest.raises(UserError, match=r"line 2: .*--strict"):
        parse.parse_behance(path, strict=True)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    packed = gzip.compress(("u1 i1 100\n" * 5000).encode())
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UserError, match="truncated or corrupt gzip"):
        parse.parse_behance(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        parse.parse_gowalla(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="does not exist"):
        parse.parse_gowalla(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="no readable"):
        parse.parse_sequence(write(tmp_path / "blank.txt", "\n\n  \n"))


def test_missing_columns_name_what_is_there(tmp_path):
    path = write(tmp_path / "d.csv", "user,item,when\na,b,1\n")
    with pytest.raises(UserError, match=r"lacks column\(s\) t \(it has: user, item, when\)"):
        parse.parse_csv(path, Columns("user", "item", "t"))
    with pytest.raises(UserError, match="lacks column"):
        parse.parse_beer_csv(path)
    frame = pd.DataFrame({"user": [1], "item": [2]})
    frame.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"lacks column\(s\) t"):
        parse.parse_parquet(tmp_path / "d.parquet", Columns("user", "item", "t"))


def test_wrong_format_fails_with_the_first_reason(tmp_path):
    path = write(tmp_path / "seq.txt", "1 2 3 4\n" * 200)
    with pytest.raises(UserError, match=r"no readable gowalla interactions \(line 1: 1 fields"):
        parse.parse_gowalla(path)
    with pytest.raises(UserError, match="no readable amazon_json"):
        parse.parse_amazon_json(path)


def test_detect_format_from_the_first_line(tmp_path):
    beauty = ("amazon_json", "amazon_csv_user_first", "sequence")
    assert detect_format(write(tmp_path / "a", '{"reviewerID": "A"}\n'), beauty) == "amazon_json"
    assert detect_format(write(tmp_path / "b", "A,B,5.0,1\n"), beauty) == "amazon_csv_user_first"
    assert detect_format(write(tmp_path / "c", "1 2 3\n"), beauty) == "sequence"
    beer = ("beer_dict", "beer_csv")
    assert detect_format(write(tmp_path / "d", "{'beer/beerId': '1'}\n", compress=True), beer) == "beer_dict"
    assert detect_format(write(tmp_path / "e", "brewery_id,beer_beerid\n"), beer) == "beer_csv"


def test_real_gowalla_sample():
    result = parse.parse_gowalla(shared_file(GOWALLA_SAMPLE))
    assert (result.interactions, len(result.users), len(result.items)) == (138_957, 7_115, 21_509)
    assert result.malformed_lines == 0


def test_real_beauty_sample():
    result = parse.parse_sequence(shared_file(BEAUTY_SAMPLE))
    assert (result.interactions, len(result.users), len(result.items)) == (198_502, 22_363, 12_101)
