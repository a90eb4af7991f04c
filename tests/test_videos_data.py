"""Checks on the shipped linear-algebra video catalog and labelled queries (assets/)."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from recsys.data import video_assets
from recsys.data.video_assets import (
    assign_splits,
    group_near_duplicates,
    jaccard,
    near_duplicate,
    normalise,
    tokens,
)
from recsys.data.videos import (
    LEVELS,
    SPLITS,
    STYLES,
    TOPICS,
    VIDEO_COLUMNS,
    load_catalog,
    load_queries,
)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def queries():
    return load_queries()


# ---------------------------------------------------------------- catalog


def test_catalog_size_schema_and_unique_ids(catalog):
    assert len(catalog) >= 200
    assert list(catalog.columns) == VIDEO_COLUMNS + ["text"]
    assert catalog["video_id"].is_unique
    assert set(catalog["level"]) <= set(LEVELS)
    row = catalog.iloc[0]
    assert row["text"] == row["title"] + ". " + row["description"]
    assert all(isinstance(t, list) and 1 <= len(t) <= 3 for t in catalog["topics"])


def test_every_topic_has_at_least_three_videos(catalog):
    counts = Counter(t for ts in catalog["topics"] for t in ts)
    thin = {t: counts[t] for t in TOPICS if counts[t] < 3}
    assert not thin, f"topics with fewer than 3 videos: {thin}"


def test_descriptions_have_two_to_four_sentences(catalog):
    import re

    n = catalog["description"].map(lambda d: len(re.findall(r"[.!?](?:\s|$)", d)))
    bad = catalog.loc[(n < 2) | (n > 4), "video_id"].tolist()
    assert not bad, f"descriptions outside 2-4 sentences: {bad}"


def test_catalog_is_cached_but_returns_copies(catalog):
    first = load_catalog()
    first.loc[0, "title"] = "changed"
    first["topics"].iloc[0].append("vectors")
    again = load_catalog()
    assert again.loc[0, "title"] == catalog.loc[0, "title"]
    assert again["topics"].iloc[0] == catalog["topics"].iloc[0]


# ---------------------------------------------------------------- queries


def test_queries_size_unique_ids_and_labels(catalog, queries):
    assert len(queries) >= 800
    assert queries["query_id"].is_unique
    ids = set(catalog["video_id"])
    missing = {v for rel in queries["relevant"] for v in rel} - ids
    assert not missing
    assert set(queries["style"]) == set(STYLES)
    assert set(queries["split"]) == set(SPLITS)


def test_every_topic_has_queries(queries):
    counts = queries["topic"].value_counts()
    assert set(counts.index) == set(TOPICS)
    assert counts.min() >= 15, counts.idxmin()


def test_split_proportions_are_7_2_1(queries):
    frac = queries["split"].value_counts(normalize=True)
    for split, target in video_assets.SPLIT_FRACTIONS.items():
        assert abs(frac[split] - target) <= 0.03, (split, frac[split])


def test_split_filter(queries):
    test = load_queries("test")
    assert len(test) == int((queries["split"] == "test").sum())
    assert set(test["split"]) == {"test"}
    with pytest.raises(ValueError, match="unknown split"):
        load_queries("dev")


def test_every_style_in_test_and_topics_spread(queries):
    test = queries[queries["split"] == "test"]
    assert set(test["style"]) == set(STYLES)
    for split in SPLITS:
        covered = queries.loc[queries["split"] == split, "topic"].nunique()
        assert covered >= 0.8 * len(TOPICS), (split, covered)


def test_no_near_duplicates_across_splits(queries):
    toks = [tokens(t) for t in queries["text"]]
    norms = [normalise(t) for t in queries["text"]]
    splits = queries["split"].tolist()
    leaks = [
        (queries["text"][i], queries["text"][j])
        for i, j in combinations(range(len(queries)), 2)
        if splits[i] != splits[j] and (norms[i] == norms[j] or jaccard(toks[i], toks[j]) >= 0.6)
    ]
    assert not leaks, leaks[:5]


def test_stored_split_is_what_the_script_assigns(queries):
    rows = queries[["text", "topic", "style"]].to_dict("records")
    assert assign_splits(rows) == queries["split"].tolist()


# ---------------------------------------------------------------- near-duplicate rule


def test_normalise_and_tokens():
    assert normalise("  Déterminant, d'une MATRICE! ") == "determinant d une matrice"
    # CJK characters are separate tokens; latin runs inside stay whole
    assert tokens("求SVD分解") == frozenset({"求", "svd", "分", "解"})


def test_jaccard_rule_by_hand():
    # {what, is, an, eigenvector} vs {what, is, an, eigenvector, exactly}: 4/5 = 0.8
    assert near_duplicate("What is an eigenvector?", "what is an eigenvector, exactly")
    # {rref, pivots} vs {rref, pivot, columns}: 1/4 = 0.25
    assert not near_duplicate("rref pivots", "rref pivot columns")
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)
    # connected components: 'abcd'~'abcde' (4/5), 'abcde'~'abcdef' (5/6), 'x y' alone
    texts = ["a b c d", "a b c d e", "a b c d e f", "x y"]
    groups = group_near_duplicates(texts)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_assign_splits_keeps_groups_together_and_is_deterministic():
    rows = [{"text": f"query number {i} about topic", "topic": "rank", "style": STYLES[i % 6]} for i in range(40)]
    rows += [{"text": "what is rank", "topic": "rank", "style": "keywords"},
             {"text": "what is rank?", "topic": "rank", "style": "keywords"}]
    # the 40 templated texts share 4 of 5 tokens (4/6 = 0.67 >= 0.6), so they form one
    # group; the two 'what is rank' variants form another
    a = assign_splits(rows)
    assert a == assign_splits(rows)
    assert len(set(a[:40])) == 1
    assert a[40] == a[41]


# ---------------------------------------------------------------- malformed files


GOOD_VIDEO = "v1,A title,Series,First sentence. Second sentence.,intro,vectors\n"


def test_malformed_catalog_names_the_line(tmp_path):
    path = tmp_path / "videos.csv"
    # line 1 header, line 2 good, lines 3-4 one record with a quoted newline,
    # line 5 the bad level -> the error must say line 5
    path.write_text(
        ",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO
        + 'v2,Title,Series,"One sentence.\nAnother one.",intro,rank\n'
        + "v3,Title,Series,Desc. More.,expert,rank\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"videos\.csv, line 5: level 'expert'"):
        load_catalog(path)


def test_catalog_wrong_field_count_and_unknown_topic(tmp_path):
    path = tmp_path / "videos.csv"
    path.write_text(",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO + "v2,only,three\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: expected 6 fields"):
        load_catalog(path)
    path2 = tmp_path / "videos2.csv"
    path2.write_text(",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO.replace("vectors", "vectors|tensors"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: unknown topic\(s\) \['tensors'\]"):
        load_catalog(path2)


def test_malformed_queries_name_the_line(tmp_path):
    videos = tmp_path / "videos.csv"
    videos.write_text(",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO, encoding="utf-8")
    qs = tmp_path / "queries.csv"
    qs.write_text(
        "query_id,text,relevant,topic,style,split\n"
        "q1,what is a vector,v1,vectors,student-question,train\n"
        "q2,eigen stuff,v1|v9,eigenvalues,keywords,test\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"queries\.csv, line 3: relevant id\(s\) not in the catalog: \['v9'\]"):
        load_queries(path=qs, catalog_path=videos)
    good = tmp_path / "good.csv"
    good.write_text(qs.read_text(encoding="utf-8").splitlines()[0] + "\n"
                    + qs.read_text(encoding="utf-8").splitlines()[1] + "\n", encoding="utf-8")
    loaded = load_queries(path=good, catalog_path=videos)
    assert loaded["relevant"].tolist() == [["v1"]]


def test_queries_bad_style_and_header(tmp_path):
    videos = tmp_path / "videos.csv"
    videos.write_text(",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO, encoding="utf-8")
    qs = tmp_path / "queries.csv"
    qs.write_text(
        "query_id,text,relevant,topic,style,split\nq1,what is a vector,v1,vectors,shouting,train\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="line 2: style 'shouting'"):
        load_queries(path=qs, catalog_path=videos)
    bad_header = tmp_path / "q2.csv"
    bad_header.write_text("id,text\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: header"):
        load_queries(path=bad_header, catalog_path=videos)
