"""Ablations: CL-EPIDTN vs baselines, its ablations, significance and sensitivity (UI only).

Everything shown is read from the reproduction's files (``docs/results/cl-epidtn/`` or
``$RECSYS_RESULTS_DIR``), written by ``python -m recsys reproduce cl-epidtn``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from recsys.eval.sequential import PROTOCOL, PROTOCOL_NO_TIME
from recsys.sequential.experiments import ABLATION_TEXT, PAPER, QUICK, results_dir
from recsys.sequential.plots import SWEEP_LABELS
from recsys.sequential.reproduce import load_results
from recsys.sequential.stats import METRIC_LABELS, display_name, pretty_table
from recsys.sequential.training import variants

VARIANTS = variants()

st.title("📊 CL-EPIDTN: baselines, ablations, sensitivity")
st.caption(
    "Reproduction of *Contrastive learning-enhanced personalized interaction dual tower network* "
    "(Yang, Wang & Li, PLOS ONE 2025) on MovieLens-100K and the anime sample."
)

with st.expander("Evaluation protocol", expanded=False):
    st.markdown(f"{PROTOCOL}\n\n{PROTOCOL_NO_TIME.strip()}\n\n"
                "Means ± standard deviations are over training seeds; t-tests are Welch two-sample tests "
                "on the per-seed HR@10 of CL-EPIDTN vs each other model (the paper's Table 5).")

folder = results_dir()
results = load_results(folder)

if not results:
    st.info(
        f"No reproduction results in `{folder}` yet. Produce them with\n\n"
        "```\npython -m recsys reproduce cl-epidtn --quick --dataset all\n```\n\n"
        "(`--quick` takes minutes on a CPU; drop it for the full 5-seed run)."
    )
else:
    tabs = st.tabs(list(results))
    for tab, (name, entry) in zip(tabs, results.items(), strict=True):
        with tab:
            meta, summary = entry.get("meta", {}), entry["summary"]
            st.markdown(f"**Protocol.** {meta.get('protocol', PROTOCOL)}")
            if meta.get("settings"):
                st.caption(f"{meta['settings']} — {meta.get('n_users', '?')} users, {meta.get('n_items', '?')} items, "
                           f"written {meta.get('date', '?')}.")
            if meta.get("quick"):
                st.warning("These are `--quick` results (fewer epochs, seeds and training examples): a smoke test of "
                           "the pipeline, not converged models.")

            left, right = st.columns([3, 1])
            with left:
                st.subheader("Main table (mean ± std over seeds)")
                st.dataframe(pretty_table(summary), hide_index=True, width="stretch")
            with right:
                st.subheader("Paper (other data)")
                st.dataframe(
                    pd.DataFrame([{"dataset": k, "HR@10": v["hit@10"], "Recall@50": v["recall@50"]} for k, v in PAPER.items()]),
                    hide_index=True,
                )
                st.caption("Amazon Books and Tmall in the paper; shown for reference only, not comparable.")

            metric = st.selectbox("Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key=f"metric-{name}")
            plotted = summary.dropna(subset=[f"{metric}_mean"])
            colors = ["#d62728" if m in VARIANTS else "#1f77b4" for m in plotted["model"]]
            figure = go.Figure(go.Bar(
                x=plotted["display"], y=plotted[f"{metric}_mean"],
                error_y=dict(type="data", array=plotted[f"{metric}_std"].fillna(0)), marker_color=colors,
            ))
            figure.update_layout(yaxis_title=METRIC_LABELS[metric], height=360, margin=dict(t=30, b=10),
                                 title=f"{name}: {METRIC_LABELS[metric]} (red: CL-EPIDTN family; bars: ±1 std)")
            st.plotly_chart(figure, width="stretch", key=f"bar-{name}")

            tests = entry.get("ttests")
            if tests is not None and not tests.empty:
                st.subheader("Significance: CL-EPIDTN vs each model on HR@10 (Welch t-test)")
                st.dataframe(tests.drop(columns=["model"], errors="ignore"), hide_index=True, width="stretch")
                if tests["p"].isna().all():
                    st.caption("p-values need at least two seeds per model.")

            ablation = summary[summary["model"].isin(VARIANTS)]
            if not ablation.empty:
                st.subheader("Ablation")
                table = pretty_table(ablation)
                table.insert(1, "removed", [ABLATION_TEXT[m] for m in ablation["model"]])
                st.dataframe(table, hide_index=True, width="stretch")

            sweeps = entry.get("sweeps")
            if sweeps is not None and not sweeps.empty:
                st.subheader("Sensitivity (paper Figures 9-11)")
                cols = st.columns(max(1, sweeps["param"].nunique()))
                for col, param in zip(cols, sweeps["param"].unique(), strict=False):
                    part = sweeps[sweeps["param"] == param].groupby("value")[["hit@10", "ndcg@10"]].agg(["mean", "std"]).sort_index()
                    fig = go.Figure()
                    for m in ("hit@10", "ndcg@10"):
                        fig.add_trace(go.Scatter(x=part.index.astype(float), y=part[(m, "mean")], mode="lines+markers",
                                                 name=METRIC_LABELS[m], error_y=dict(type="data", array=part[(m, "std")].fillna(0))))
                    fig.update_layout(title=SWEEP_LABELS.get(param, param), height=300, margin=dict(t=40, b=10))
                    col.plotly_chart(fig, width="stretch", key=f"sweep-{name}-{param}")

    readme = folder / "README.md"
    if readme.exists():
        with st.expander("How these results were produced (README)"):
            st.markdown(readme.read_text())
    peer = folder / "recbole_sasrec.md"
    if peer.exists():
        with st.expander("Peer check: RecBole's SASRec vs ours"):
            st.markdown(peer.read_text())

# ----------------------------------------------------------------------- quick retrain
st.divider()
st.subheader("Retrain one model quickly")
st.caption("Launches a background run (recorded in the run registry, visible in the Training studio), then the "
           "test metrics. SASRec and the CL-EPIDTN family train on every prefix (causal windows), the family at "
           "the shape of `--quick` (d=64, 2 layers); DSSM, YouTube DNN and MIND on each user's 10 latest prefixes.")

from recsys import registry  # noqa: E402
from recsys.sequential.training import recipe as sequential_recipe  # noqa: E402
from recsys.train.runs import RunRegistry  # noqa: E402

recipes = {spec.name: sequential_recipe(spec) for spec in registry.by_domain("sequential") if spec.kind == "neural"}
if not recipes:
    st.info("No sequential recipes are registered.")
else:
    c1, c2, c3 = st.columns(3)
    model_name = c1.selectbox("Model", list(recipes), format_func=display_name,
                              key="ablations_model")
    dataset = c2.selectbox("Dataset", ["ml-100k", "anime"], key="ablations_dataset")
    epochs = c3.number_input("Epochs", min_value=1, max_value=20, value=1)
    if st.button("Train", type="primary", key="ablations_train"):
        recipe = recipes[model_name]
        registry = RunRegistry()
        options = {"dataset": dataset, **(QUICK.cl_overrides if model_name in VARIANTS else {})}
        run = registry.create(model_name, recipe.config(epochs=int(epochs)), options)
        registry.launch(run)
        st.session_state["ablations_run"] = run.id
        st.success(f"launched run {run.id}")

    def show_run() -> None:
        run_id = st.session_state.get("ablations_run")
        if not run_id:
            return
        try:
            run = RunRegistry().get(run_id)
        except KeyError:
            st.warning(f"run {run_id} is gone")
            return
        status = run.status()
        st.write(f"Run `{run.id}`: **{status['status']}**")
        if status.get("error"):  # may quote file paths or data: plain text, never Markdown
            st.text(str(status["error"]))
        records = run.metrics()
        if records:
            frame = pd.DataFrame(records).set_index("epoch")
            shown = [c for c in ("train_loss", "hit@10", "ndcg@10") if c in frame]
            st.line_chart(frame[shown])
        summary = status.get("summary")
        if summary:
            st.json(summary)
        if status["status"] not in ("done", "stopped", "failed") and st.button("Stop run"):
            run.request_stop()

    fragment = getattr(st, "fragment", None)
    if fragment is not None:
        fragment(run_every=2)(show_run)()
    else:  # pragma: no cover - older streamlit
        show_run()
        st.button("Refresh")

