"""Broken and unusual data files: refused with file and line, or loaded with a warning.

Before the fix an ``anime.csv`` cut mid-row loaded (the cut anime then had no genre),
``user_id,anime_id`` values above 2^31 wrapped to int32 (4294967316 became anime 20),
and an ``ml-100k.inter`` with a garbage line and a cut last row loaded silently (the
garbage became a new user, the cut row a NaN timestamp).
"""

from __future__ import annotations

import logging

import pytest

from recsys.data import anime
from recsys.data.integrity import DataFileError, FileReport, report
from recsys.data.movielens import load_ml100k, read_atomic

ANIME_CSV = (
    "anime_id,name,genre,type,episodes,rating,members\r\n"
    '20,Naruto,"Action, Shounen",TV,220,7.81,683297\r\n'
    "32400,Some Film,Drama,Movie,1,8.0,1000\r\n"
)
RATING_CSV = "user_id,anime_id,rating\n1,20,8\n1,32400,-1\n2,20,10\n"

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t300\n2\t20\t3\t200\n1\t20\t5\t100\n"
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tA\t1995\tAction\n20\tB\t1955\tDrama\n"
USER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\tother\t1\n2\t60\tF\tother\t2\n"


def anime_files(tmp_path, anime_csv=ANIME_CSV, rating_csv=RATING_CSV):
    folder = tmp_path / "anime"
    folder.mkdir(exist_ok=True)
    (folder / "anime.csv").write_bytes(anime_csv.encode())
    (folder / "rating.csv").write_bytes(rating_csv.encode())
    return folder


def ml_files(tmp_path, inter=INTER, item=ITEM, user=USER):
    folder = tmp_path / "ml-100k"
    folder.mkdir(exist_ok=True)
    for name, text in [("ml-100k.inter", inter), ("ml-100k.item", item), ("ml-100k.user", user)]:
        (folder / name).write_text(text)
    return folder


# --- anime --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, match", [
    (ANIME_CSV[:-12], r"anime.csv: line 3: the last line has no line end"),  # cut mid-row
    (ANIME_CSV + "32401,Cut Row\r\n", r"anime.csv: line 4: 2 field\(s\), expected 7"),  # a short row
    (ANIME_CSV + "garbage line\r\n", r"anime.csv: line 4"),
    (ANIME_CSV + "4294967316,Wrapped,Drama,TV,1,7.0,10\r\n", r"anime.csv: line 4: column 'anime_id' must be an id"),
    ("id,name\r\n1,x\r\n", r"anime.csv: line 1: expected header"),
    ("", r"anime.csv: the file is empty"),
])
def test_broken_catalogues_are_refused_with_file_and_line(tmp_path, text, match):
    with pytest.raises(anime.AnimeDataError, match=match):
        anime.load_catalogue(anime_files(tmp_path, anime_csv=text) / "anime.csv")


@pytest.mark.parametrize("text, match", [
    (RATING_CSV + "3,20,1", r"rating.csv: line 5: the last line has no line end"),  # "3,20,10" cut
    (RATING_CSV + "3,4294967316,8\n", r"rating.csv: line 5: column 'anime_id' must be an id in 1..2147483647"),
    (RATING_CSV + "-4,20,8\n", r"rating.csv: line 5: column 'user_id' must be an id"),
    (RATING_CSV + "99999999999999999999,20,8\n", r"rating.csv: line 5: column 'user_id' must be an integer"),
    (RATING_CSV + "hello world\n", r"rating.csv: line 5"),
    (RATING_CSV + "3,20\n", r"rating.csv: line 5: column 'rating' must be an integer"),
    (RATING_CSV + "\n3,20,8\n", r"rating.csv: line 5"),  # a blank line
    (RATING_CSV + "3,20,11\n", r"rating.csv: line 5: column 'rating' must be -1"),
    ("user,anime,score\n1,2,3\n", r"rating.csv: line 1: expected header"),
])
def test_broken_rating_files_are_refused_with_file_and_line(tmp_path, text, match):
    with pytest.raises(anime.AnimeDataError, match=match):
        anime.load_ratings(anime_files(tmp_path, rating_csv=text) / "rating.csv")


def test_ids_never_wrap_into_another_anime(tmp_path):
    # 4294967316 = 2^32 + 20: as int32 it was anime 20 (Naruto)
    with pytest.raises(anime.AnimeDataError, match="4294967316"):
        anime.load_ratings(anime_files(tmp_path, rating_csv=RATING_CSV + "1,4294967316,9\n") / "rating.csv")
    ratings = anime.load_ratings(anime_files(tmp_path, rating_csv=RATING_CSV + "1,2147483647,9\n") / "rating.csv")
    assert ratings["anime_id"].dtype == "int64" and ratings["anime_id"].tolist()[-1] == 2**31 - 1


def test_a_tiny_file_loads_with_a_release_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    folder = anime_files(tmp_path)
    with caplog.at_level(logging.WARNING):
        catalogue, ratings = anime.load_anime(folder)
    assert len(catalogue) == 2 and len(ratings) == 3
    [cat_report, rating_report] = anime.LAST_REPORTS
    assert (cat_report.rows, rating_report.rows) == (2, 3) and cat_report.release is None
    assert "anime.csv has 2 rows; the public release has 12,294" in anime.data_warnings()[0]
    assert "7,813,737" in anime.data_warnings()[1] and "520,609" in anime.data_warnings()[1]
    assert "the public release has 12,294" in caplog.text
    anime.LAST_REPORTS.clear()
    anime.load_anime(folder)  # from the parquet cache: the reports come back too
    assert [r.rows for r in anime.LAST_REPORTS] == [2, 3]


def test_same_row_count_different_contents_is_reported(tmp_path, monkeypatch):
    from recsys.data import integrity

    path = tmp_path / "ml-100k.user"
    path.write_text(USER)
    monkeypatch.setitem(integrity.KNOWN_RELEASES, "ml-100k.user", (integrity.Release("R", 2, "0" * 64),))
    result = report(path, 2)
    assert isinstance(result, FileReport) and "has the 2 rows of R but different contents" in result.warnings[0]
    monkeypatch.setitem(integrity.KNOWN_RELEASES, "ml-100k.user", (integrity.Release("R", 2, result.sha256),))
    assert report(path, 2).release == "R" and report(path, 2).warnings == []


# --- ml-100k ------------------------------------------------------------------------------------
@pytest.mark.parametrize("inter, match", [
    (INTER[:-3], r"ml-100k.inter: line 4: the last line has no line end"),  # the final row cut
    (INTER + "garbage line\n", r"ml-100k.inter: line 5: 1 field\(s\), expected 4"),
    (INTER + "1\t10\t4\t300\textra\n", r"ml-100k.inter: line 5: 5 field\(s\), expected 4"),
    (INTER + "1\t10\tfour\t300\n", r"ml-100k.inter: line 5: column 'rating' must be a number"),
    (INTER + "1\t10\t4\tnan\n", r"ml-100k.inter: line 5: column 'timestamp' must be a number"),
    (INTER + "1\t10\t9\t300\n", r"ml-100k.inter: line 5: rating 9 must be 1..5"),
    (INTER + "7\t10\t4\t300\n", r"ml-100k.inter: line 5: user_id '7' is not in ml-100k.user"),
    (INTER + "1\t4294967316\t4\t300\n", r"ml-100k.inter: line 5: item_id '4294967316' is not in ml-100k.item"),
    (INTER.replace("rating:float", "rating:token"), r"ml-100k.inter: line 1: expected a column rating:float"),
    (INTER.replace("timestamp:float", "timestamp"), r"ml-100k.inter: line 1: header column 'timestamp'"),
])
def test_broken_interactions_are_refused_with_file_and_line(tmp_path, inter, match):
    with pytest.raises(DataFileError, match=match):
        load_ml100k(ml_files(tmp_path, inter=inter))


def test_a_repeated_item_is_refused(tmp_path):
    with pytest.raises(DataFileError, match=r"ml-100k.item: line 4: item_id '20' repeats"):
        load_ml100k(ml_files(tmp_path, item=ITEM + "20\tB again\t1955\tDrama\n"))


def test_a_small_valid_copy_loads_with_row_counts_and_warnings(tmp_path):
    data = load_ml100k(ml_files(tmp_path))
    assert [r.rows for r in data.data_reports] == [3, 2, 2]
    assert "ml-100k.inter has 3 rows; the public release has 100,000" in data.data_reports[0].warnings[0]


def test_read_atomic_refuses_non_utf8(tmp_path):
    path = tmp_path / "ml-100k.item"
    path.write_bytes(b"item_id:token\n\xff\xfe\n")
    with pytest.raises(DataFileError, match="not UTF-8"):
        read_atomic(path)
