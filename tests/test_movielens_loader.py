"""The ml-100k atomic-format loader on a tiny hand-made copy (never the real files)."""

from __future__ import annotations

import zipfile

import pytest

from recsys.data.movielens import extract_from_wheel, load_ml100k, read_atomic
from recsys.paths import DataNotFoundError

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
2\t10\t4\t300
1\t20\t3\t200
1\t10\t5\t100
1\t30\t1\t200
2\t20\t2\t100
"""
ITEM = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
10\tA "quoted" film\t1995\tAction Comedy
20\tB\t1955\tDrama
30\tC\t\tAction
"""
USER = """user_id:token\tage:token\tgender:token\tocupation:token\tzip_code:token
"""
USER_OK = """user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token
1\t24\tM\ttechnician\t85711
2\t60\tF\tother\t94043
"""


def write(folder, inter=INTER, item=ITEM, user=USER_OK):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-100k.inter").write_text(inter)
    (folder / "ml-100k.item").write_text(item)
    (folder / "ml-100k.user").write_text(user)
    return folder


def test_sequences_are_time_ordered_with_ties_broken_by_item_id(tmp_path):
    data = load_ml100k(write(tmp_path / "ml-100k"))
    assert (data.n_users, data.n_items) == (2, 3)
    # user 1: item 10 at t=100, then items 20 and 30 both at t=200 -> item id order 20, 30
    # raw item ids 10, 20, 30 map to 1, 2, 3
    assert data.sequences[1] == [1, 2, 3]
    assert data.sequences[2] == [2, 1]  # item 20 at t=100, item 10 at t=300
    assert data.has_timestamps and data.item_names[1] == 'A "quoted" film'


def test_features(tmp_path):
    data = load_ml100k(write(tmp_path / "ml-100k"))
    users = data.user_features
    assert users.names == ["age_bucket", "gender", "occupation"]
    # age 24 falls in [18, 25) -> bucket 2 (edges 18,25,35,45,50,56: <18 is 1); age 60 -> 56+ = bucket 7
    assert users.values[1, 0] == 2 and users.values[2, 0] == 7
    # genders sorted F=1, M=2; occupations sorted other=1, technician=2
    assert users.values[1, 1:].tolist() == [2, 2] and users.values[2, 1:].tolist() == [1, 1]
    items = data.item_features
    # genres sorted Action=1, Comedy=2, Drama=3
    assert items.multi[1].tolist() == [1, 2] and items.multi[2].tolist() == [3, 0] and items.multi[3].tolist() == [1, 0]
    # release year 1995 -> 1990s bucket (7 edges: 1930..1990 -> code 8); 1955 -> code 4; missing -> 0
    assert items.values[:, 0].tolist() == [0, 8, 4, 0]


def test_typed_header_is_parsed(tmp_path):
    frame = read_atomic(write(tmp_path / "ml-100k") / "ml-100k.inter")
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame["timestamp"].tolist() == [300, 200, 100, 200, 100]


def test_missing_files_and_columns_give_clear_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="ml-100k.user"):
        folder = tmp_path / "partial"
        folder.mkdir()
        (folder / "ml-100k.inter").write_text(INTER)
        (folder / "ml-100k.item").write_text(ITEM)
        load_ml100k(folder)
    with pytest.raises(ValueError, match="occupation"):
        load_ml100k(write(tmp_path / "bad", user=USER))


def test_extract_from_a_recbole_wheel(tmp_path):
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", INTER)
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.item", ITEM)
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.user", USER_OK)
    folder = extract_from_wheel(wheel, tmp_path / "data")
    assert load_ml100k(folder).sequences[1] == [1, 2, 3]


@pytest.mark.slow
def test_real_ml100k_if_present():
    try:
        data = load_ml100k()
    except DataNotFoundError as error:
        pytest.skip(f"ml-100k not available: {error}")
    assert (data.n_users, data.n_items) == (943, 1682)
    assert sum(len(s) for s in data.sequences.values()) == 100_000
