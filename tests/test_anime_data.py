"""Anime loader and the paper's split, on tiny hand-made files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.anime import (
    AnimeDataError,
    load_anime,
    load_catalogue,
    load_ratings,
    split_anime,
    split_ratings,
)

ANIME_CSV = (
    "anime_id,name,genre,type,episodes,rating,members\r\n"
    '1,Gintama&#039;,"Action, Comedy",TV,51,9.16,151266\r\n'
    "2,Steins;Gate,Sci-Fi,TV,Unknown,9.17,673572\r\n"
    "3,Mystery &amp; Co,,,1,,10\r\n"
)
RATING_CSV = "user_id,anime_id,rating\r\n1,1,8\r\n1,2,-1\r\n2,1,10\r\n"


def write(tmp_path, anime=ANIME_CSV, rating=RATING_CSV):
    folder = tmp_path / "anime"
    folder.mkdir(exist_ok=True)
    (folder / "anime.csv").write_bytes(anime.encode())
    (folder / "rating.csv").write_bytes(rating.encode())
    return folder


def test_catalogue_cleaning(tmp_path):
    catalogue = load_catalogue(write(tmp_path) / "anime.csv")
    assert catalogue["name"].tolist() == ["Gintama'", "Steins;Gate", "Mystery & Co"]  # entities unescaped
    assert catalogue["genre"].iloc[0] == "Action, Comedy"
    assert pd.isna(catalogue["episodes"].iloc[1]) and catalogue["episodes"].iloc[0] == 51  # Unknown -> NA
    assert pd.isna(catalogue["genre"].iloc[2]) and pd.isna(catalogue["type"].iloc[2])  # empty -> NA
    assert pd.isna(catalogue["rating"].iloc[2]) and catalogue["rating"].iloc[1] == pytest.approx(9.17)
    assert not catalogue["name"].str.endswith("\r").any()  # CRLF handled


def test_ratings_keep_watched_rows(tmp_path):
    ratings = load_ratings(write(tmp_path) / "rating.csv")
    assert ratings.to_numpy().tolist() == [[1, 1, 8], [1, 2, -1], [2, 1, 10]]


@pytest.mark.parametrize(
    ("anime", "rating", "needle"),
    [
        (ANIME_CSV + '4,Extra,"A",TV,1,7.0,5,surplus\r\n', RATING_CSV, "line 5"),  # too many fields
        (ANIME_CSV.replace("51,9.16", "five,9.16"), RATING_CSV, "line 2: column 'episodes'"),
        (ANIME_CSV, RATING_CSV + "3,x,5\r\n", "line 5: column 'anime_id'"),
        (ANIME_CSV, RATING_CSV + "3,1,11\r\n", "line 5: column 'rating'"),
        (ANIME_CSV, "user,anime,score\r\n1,1,1\r\n", "line 1: expected header"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, anime, rating, needle):
    folder = write(tmp_path, anime, rating)
    with pytest.raises(AnimeDataError) as error:
        load_anime(folder, use_cache=False)
    assert needle in str(error.value)
    assert str(folder) in str(error.value)


def test_cache_follows_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    folder = write(tmp_path)
    _, first = load_anime(folder)
    assert list((tmp_path / "cache" / "anime" / "parsed").glob("ratings-*.parquet"))
    (folder / "rating.csv").write_bytes((RATING_CSV + "2,2,3\r\n").encode())
    _, second = load_anime(folder)
    assert len(first) == 3 and len(second) == 4


def test_split_arithmetic():
    # sizes: user 1 has 25 rows, user 2 has 9, users 4 and 5 have 4, user 3 has 1 (dropped).
    # test rows = floor(n * 0.1): 25 -> 2 (23 train), 9 -> 0, 4 -> 0. One user is held out as unseen.
    sizes = {1: 25, 2: 9, 3: 1, 4: 4, 5: 4}
    rows = [(u, i, -1 if u == 4 else 5) for u, n in sizes.items() for i in range(n)]
    ratings = pd.DataFrame(rows, columns=["user_id", "anime_id", "rating"])
    train, test, unseen = split_ratings(ratings, n_unseen=1, seed=3)
    assert 3 not in set(train["user_id"]) | set(test["user_id"]) | set(unseen["user_id"])
    (held_out,) = unseen["user_id"].unique()
    assert len(unseen) == sizes[held_out]
    expected_test = {1: 2, 2: 0, 4: 0, 5: 0}
    for user, n_test in expected_test.items():
        if user == held_out:
            continue
        assert (test["user_id"] == user).sum() == n_test
        assert (train["user_id"] == user).sum() == sizes[user] - n_test
    # -1 rows are kept (as watched), wherever user 4 went
    assert (pd.concat([train, test, unseen])["rating"] == -1).sum() == 4
    # same seed, same split
    assert split_ratings(ratings, n_unseen=1, seed=3)[1].equals(test)


def test_split_indices_are_contiguous():
    catalogue = pd.DataFrame({"anime_id": [10, 20, 30], "name": ["a", "b", "c"], "genre": ["X", None, "Y"],
                              "type": ["TV"] * 3, "episodes": [1, 2, 3], "rating": [7.0, 8.0, 9.0],
                              "members": [5, 6, 7]})
    ratings = pd.DataFrame({"user_id": [7, 7, 9, 9, 11, 11], "anime_id": [10, 30, 10, 20, 20, 30],
                            "rating": [5, -1, 6, 7, 8, 9]})
    split = split_anime(catalogue, ratings, n_unseen=1, seed=0)
    assert split.n_items == 3 and split.items["anime_id"].tolist() == [10, 20, 30]
    assert split.n_users == 2 and sorted(split.train["user"].unique()) == [0, 1]
    assert split.item_index([30, 99]).tolist() == [2, -1]
    assert np.isin(split.unseen["item"], [0, 1, 2]).all()


def test_fullsize_generator_keeps_the_samples_shape():
    import numpy as np
    import pandas as pd

    from recsys.anime.fullsize import generate

    # 3 sample users with 2, 3 and 5 rows over anime 1..5; ratings 8 (x6), -1 (x2), 10 (x2)
    sample = pd.DataFrame({"user_id": [1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
                           "anime_id": [1, 2, 1, 2, 3, 1, 2, 3, 4, 5],
                           "rating": [8, 8, 8, 8, -1, 8, 8, -1, 10, 10]})
    frame = generate(sample, np.arange(1, 21), n_users=50, rows=200, seed=0)
    assert frame["user_id"].nunique() == 50 and not frame.duplicated(["user_id", "anime_id"]).any()
    assert 150 <= len(frame) <= 200  # lengths rescaled to 200 in total (a few lost to de-duplication)
    assert set(frame["rating"]) <= {8, -1, 10} and set(frame["anime_id"]) <= set(range(1, 21))
    assert frame.equals(generate(sample, np.arange(1, 21), n_users=50, rows=200, seed=0))  # seeded
