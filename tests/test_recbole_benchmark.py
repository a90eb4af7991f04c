"""The RecBole peer check's split helpers (RecBole itself is not needed: it is not a project dependency)."""

from __future__ import annotations

from benchmarks.recbole_sasrec import RANKED, expected_test_rows, ranked_copy


def test_ranked_copy_orders_ties_by_item_id_and_gives_the_held_out_rows(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    # user 1 rated items 30 and 20 in the same second (a tie), then 10; user 2 has only two ratings
    (source / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t30\t4\t100\n1\t20\t3\t100\n1\t10\t5\t200\n1\t40\t2\t50\n2\t5\t1\t10\n2\t6\t1\t11\n"
    )
    out = ranked_copy(source, tmp_path / "dest")
    assert out.name == RANKED and (out / f"{RANKED}.inter").is_file()  # never named ml-100k (RecBole would ignore it)
    # user 1 in (time, item id) order: 40 (t=50), 20 and 30 (t=100, tie broken by id), 10 (t=200)
    rows = expected_test_rows(out, max_seq_len=2)
    # the test item is the last one, its input the (at most 2) items before it; user 2 is too short to split
    assert rows == {"1": (["20", "30"], "10")}
