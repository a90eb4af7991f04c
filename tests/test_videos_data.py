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
    DERIVED_ID,
    LANGUAGES,
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
    # over the original queries: derived ones (translations) follow their source's split
    originals = queries[~queries["query_id"].str.match(DERIVED_ID)]
    frac = originals["split"].value_counts(normalize=True)
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
    rows = queries[["query_id", "text", "topic", "style"]].to_dict("records")
    assert assign_splits(rows) == queries["split"].tolist()


def test_enough_queries_per_language_in_validation_and_test(queries):
    counts = queries.groupby(["language", "split"]).size()
    assert set(queries["language"]) <= set(LANGUAGES)
    for split in ("validation", "test"):
        assert counts[("zh", split)] >= 30, split
        for lang in ("es", "fr", "de"):
            assert counts[(lang, split)] >= 25, (lang, split)
    assert (queries.loc[queries["language"] == "en", "style"] != "non-english").all()


def test_derived_queries_copy_their_source(queries):
    by_id = queries.set_index("query_id")
    derived = queries[queries["query_id"].str.match(DERIVED_ID)]
    assert len(derived) >= 300
    for row in derived.itertuples():
        source = by_id.loc[DERIVED_ID.match(row.query_id).group(1)]
        assert (row.split, row.topic, row.relevant) == (source["split"], source["topic"], source["relevant"])
        assert row.language == DERIVED_ID.match(row.query_id).group(2) != source["language"]


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


def test_assign_splits_derived_rows_inherit_and_leave_originals_alone():
    rows = [{"query_id": f"q{i:04d}", "text": f"distinct{i} words{i}", "topic": "rank", "style": STYLES[i % 6]}
            for i in range(1, 21)]
    before = assign_splits(rows)
    # a translation of q0007 and of q0013: each takes its source's split, originals unchanged
    extra = [{"query_id": "q0007-zh", "text": "秩是什么", "topic": "rank", "style": "non-english"},
             {"query_id": "q0013-de2", "text": "was ist der Rang", "topic": "rank", "style": "non-english"}]
    after = assign_splits(rows + extra)
    assert after[:20] == before
    assert after[20:] == [before[6], before[12]]


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
        "query_id,text,relevant,topic,style,split,language\n"
        "q1,what is a vector,v1,vectors,student-question,train,en\n"
        "q2,eigen stuff,v1|v9,eigenvalues,keywords,test,en\n",
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
        "query_id,text,relevant,topic,style,split,language\nq1,what is a vector,v1,vectors,shouting,train,en\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="line 2: style 'shouting'"):
        load_queries(path=qs, catalog_path=videos)
    bad_header = tmp_path / "q2.csv"
    bad_header.write_text("id,text\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: header"):
        load_queries(path=bad_header, catalog_path=videos)


QUERY_HEADER = "query_id,text,relevant,topic,style,split,language\n"


@pytest.mark.parametrize(
    "body, message",
    [
        # no language column at all: the header names what is expected
        ("query_id,text,relevant,topic,style,split\nq0001,what is a vector,v1,vectors,keywords,train\n",
         r"line 1: header is .*'language'"),
        (QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,train,\n", r"line 2: empty 'language'"),
        (QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,train,english\n",
         r"line 2: language 'english' is not one of"),
        (QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,train,xx\n", r"line 2: language 'xx'"),
        # English text filed as Spanish while the style says English
        (QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,train,es\n",
         r"line 2: language 'es' does not match style 'keywords'"),
        # Chinese characters labelled French
        (QUERY_HEADER + "q0001,什么是向量,v1,vectors,non-english,train,fr\n", r"line 2: language 'fr' does not match the script"),
        # kana is Japanese, not Chinese
        (QUERY_HEADER + "q0001,ベクトルとは,v1,vectors,non-english,train,zh\n", r"line 2: language 'zh' does not match the script"),
        # a translation must keep its source's split (no test query's translation in train)
        (QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,test,en\n"
         "q0001-zh,什么是向量,v1,vectors,non-english,train,zh\n", r"line 3: split differs from its source q0001"),
        (QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,test,en\n"
         "q0001-zh,什么是向量,v1,vectors,non-english,test,ja\n", r"line 3: id 'q0001-zh' says language 'zh'"),
        (QUERY_HEADER + "q0002-zh,什么是向量,v1,vectors,non-english,test,zh\n", r"derives from unknown query 'q0002'"),
    ],
)
def test_queries_language_is_checked_strictly(tmp_path, body, message):
    videos = tmp_path / "videos.csv"
    videos.write_text(",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO, encoding="utf-8")
    qs = tmp_path / "queries.csv"
    qs.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_queries(path=qs, catalog_path=videos)


def test_queries_language_column_loads(tmp_path):
    videos = tmp_path / "videos.csv"
    videos.write_text(",".join(VIDEO_COLUMNS) + "\n" + GOOD_VIDEO, encoding="utf-8")
    qs = tmp_path / "queries.csv"
    qs.write_text(QUERY_HEADER + "q0001,what is a vector,v1,vectors,keywords,test,en\n"
                  "q0001-zh,什么是向量,v1,vectors,non-english,test,zh\n"
                  "q0001-ja,ベクトルとは何か,v1,vectors,non-english,test,ja\n", encoding="utf-8")
    assert load_queries(path=qs, catalog_path=videos)["language"].tolist() == ["en", "zh", "ja"]
