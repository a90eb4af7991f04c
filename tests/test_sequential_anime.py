"""The anime sample as sequences, on a tiny hand-made copy of the two CSVs (order unknown: file order)."""

from __future__ import annotations

import pytest

from recsys.data.anime_sequences import load_anime_sequences

ANIME = """anime_id,name,genre,type,episodes,rating,members\r
5,Five,"Action, Comedy",TV,12,8.1,200000\r
7,Seven &amp; Co,Drama,Movie,1,7.0,5000\r
9,Nine,,OVA,Unknown,,\r
"""
RATINGS = """user_id,anime_id,rating
1,9,8
1,5,-1
1,7,6
2,5,10
2,7,7
3,9,3
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "anime.csv").write_text(ANIME)
    (tmp_path / "rating.csv").write_text(RATINGS)
    return tmp_path


def test_file_order_is_kept_and_watched_rows_count(folder):
    data = load_anime_sequences(folder, min_item_count=1, min_user_count=1)
    assert not data.has_timestamps
    # ids sorted: anime 5 -> 1, 7 -> 2, 9 -> 3; user 1's rows in file order: 9, 5 (-1 = watched, kept), 7
    assert data.sequences[1] == [3, 1, 2]
    assert data.sequences[2] == [1, 2] and data.sequences[3] == [3]
    assert data.item_names[2] == "Seven & Co"
    # genres sorted Action=1, Comedy=2, Drama=3; 'Nine' has none
    assert data.item_features.multi[1].tolist() == [1, 2] and data.item_features.multi[3].tolist() == [0, 0]
    # activity bucket = 1 + floor(log2(n)): 3 items -> 2, 1 item -> 1
    assert data.user_features.values[1, 0] == 2 and data.user_features.values[3, 0] == 1


def test_filtering(folder):
    # anime 9 has 2 interactions, 5 and 7 have 2 each; users need >= 2 items -> user 3 (one item) goes
    data = load_anime_sequences(folder, min_item_count=2, min_user_count=2)
    assert data.n_users == 2 and data.n_items == 3
    assert load_anime_sequences(folder, min_item_count=1, min_user_count=1, max_users=1).n_users == 1
    with pytest.raises(ValueError, match="no anime interactions"):
        load_anime_sequences(folder, min_item_count=99)
