"""Results: the three papers' tables, verdicts, convergence and commands, for reviewers (UI only).

Everything shown is read by :mod:`recsys.reports` from the committed files in ``docs/results/`` (or
``$RECSYS_REPORTS_DIR``); this page only lays it out. Each paper has an anchor (``/results#dcdt``,
``#two-towers``, ``#cl-epidtn``) so other pages and the README can link straight to it.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from recsys.reports import Report, Section, sections, sentences, signature, verdict_view
from recsys.reports.sequential import curve_histories, sweep_figure
from recsys.viz.figures import curves_figure

STATUS = {  # report status -> (streamlit call, prefix)
    "converged": (st.success, "✅"),
    "done": (st.info, "ℹ️"),
    "quick": (st.warning, "⚠️"),
    "incomplete": (st.warning, "⏳"),
    "missing": (st.info, "ℹ️"),
}

st.title("📑 Results")
st.markdown(
    "For each of the three papers this project reproduces: the protocol in words, our table beside the paper's "
    "own figures, a verdict per comparison (Welch t-test over seeds, direction, Holm-corrected p), evidence that "
    "training converged, and the command that regenerates the table. Jump to "
    "[DCDT](#dcdt) · [Two Towers](#two-towers) · [CL-EPIDTN](#cl-epidtn) · [Retrain one model](#retrain)."
)


@st.cache_resource(show_spinner="Reading the result files…", max_entries=4)
def load(key: tuple) -> list[Section]:
    """The sections, read again whenever a result file changes (``key`` is :func:`recsys.reports.signature`)."""
    return sections()


def markdown_file(path) -> str:
    """A committed Markdown file without its image lines (relative images do not resolve on a page)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"({path.name} could not be read: {error})"
    return re.sub(r"^!\[.*$", "", text, flags=re.MULTILINE)


def show_table(table, key: str, width: str = "stretch") -> None:
    st.markdown(f"**{table.title}**")
    st.dataframe(table.frame, hide_index=True, width=width, key=key)
    if table.caption:
        st.caption(table.caption)


def show_verdicts(report: Report, key: str) -> None:
    st.markdown("**Verdict**")
    if report.compare is None and report.verdicts is None:
        st.caption("No per-seed values to test.")
        return
    metric, reference = report.default_metric, report.default_reference
    if report.compare is not None and report.models:
        left, right = st.columns(2)
        metrics = list(report.metrics)
        metric = left.selectbox("Metric", metrics, index=metrics.index(metric) if metric in metrics else 0,
                                format_func=report.metrics.get, key=f"{key}-metric")
        models = report.models
        reference = right.selectbox("Compare every model against", models,
                                    index=models.index(reference) if reference in models else 0, key=f"{key}-ref")
    default = (metric, reference) == (report.default_metric, report.default_reference)
    table = report.verdicts if default and report.verdicts is not None else report.compare(metric, reference)
    if table is None or table.empty:
        st.caption("No test for this choice (fewer than two seeds a side, or the metric is not in the files).")
        return
    st.markdown("\n".join(f"- {sentence}" for sentence in sentences(table, report.metrics)))
    view = verdict_view(table, report.metrics)
    st.dataframe(view, hide_index=True, width="stretch", key=f"{key}-verdicts",
                 column_order=[c for c in view.columns if c != "Verdict"])  # the sentences above say it
    st.caption((f"Source: {report.verdict_source}. " if default else "Computed here from the per-seed values. ")
               + "Difference = first model minus the second; Holm corrects for every comparison in this table; "
                 "'better' needs Holm p < 0.05.")


def show_convergence(report: Report, key: str) -> None:
    st.markdown("**Convergence**")
    if report.convergence_text:
        st.markdown(report.convergence_text)
    if report.convergence is not None:
        st.dataframe(report.convergence, hide_index=True, width="stretch", key=f"{key}-convergence")
    if report.curves is None:
        if report.status in ("quick", "converged", "incomplete"):
            st.caption("No learning curves in these files.")
        return
    models = list(dict.fromkeys(report.curves["model"]))
    left, right = st.columns(2)
    model = left.selectbox("Learning curves of", models, key=f"{key}-curve-model")
    splits = sorted(report.curves.loc[report.curves["model"] == model, "split"].dropna().astype(str).unique()) \
        if "split" in report.curves else []
    split = splits[0] if len(splits) == 1 else None
    if len(splits) > 1:
        split = right.selectbox("Split", splits, key=f"{key}-curve-split")
    histories, metric = curve_histories(report.curves, model, split)
    if not histories:
        st.caption("No epochs recorded for this model.")
        return
    loss_col, metric_col = st.columns(2)
    loss = curves_figure(histories, "train_loss", title=f"{model}: training loss").update_yaxes(title_text="loss")
    loss_col.plotly_chart(loss, width="stretch", key=f"{key}-loss")
    metric_col.plotly_chart(curves_figure(histories, metric, title=f"{model}: {metric}"), width="stretch",
                            key=f"{key}-val")


def show_report(section: Section, report: Report) -> None:
    key = f"{section.key}-{report.key}"
    call, icon = STATUS.get(report.status, (st.info, "ℹ️"))
    call(f"{icon} {report.name}: {report.status_text or report.status}")
    if report.problems:
        st.error("Some result files could not be used; everything else is shown:")
        for problem in report.problems:
            st.text(problem)  # file names and parser messages: plain text
    if report.protocol:
        st.markdown(f"**Protocol.** {report.protocol}")
    for note in report.notes:
        st.caption(note)
    for i, table in enumerate(report.ours):  # ours full width, the paper's figures right under it
        show_table(table, f"{key}-ours-{i}")
    for i, table in enumerate(report.paper):
        show_table(table, f"{key}-paper-{i}", width="content")
    if report.ours:
        show_verdicts(report, key)
    for i, table in enumerate(report.extra):
        show_table(table, f"{key}-extra-{i}")
    if report.ours:
        show_convergence(report, key)
    if report.sweeps is not None and not report.sweeps.empty:
        st.markdown("**Sensitivity (the paper's Figures 9-11)**")
        params = list(dict.fromkeys(report.sweeps["param"].astype(str)))
        for col, param in zip(st.columns(len(params)), params, strict=True):
            col.plotly_chart(sweep_figure(report.sweeps, param), width="stretch", key=f"{key}-sweep-{param}")
    for what, command in report.commands:
        st.markdown(f"**Regenerate** ({what}):")
        st.code(command, language="bash")


SECTIONS = load(signature())
st.subheader("At a glance")
for section in SECTIONS:
    for report in section.reports:
        lines = report.headline()[:2]
        status = report.status_text or report.status
        st.markdown(f"**[{section.title.split(':')[0]}](#{section.key}), {report.name}** ({status})"
                    + "".join(f"\n- {line}" for line in lines))

for section in SECTIONS:
    st.divider()
    st.header(section.title, anchor=section.key)
    st.caption(section.paper)
    if not section.reports:
        st.info("No results for this paper yet.")
    elif len(section.reports) == 1:
        show_report(section, section.reports[0])
    else:
        for tab, report in zip(st.tabs([r.name for r in section.reports]), section.reports, strict=True):
            with tab:
                show_report(section, report)
    for title, path in section.documents:
        with st.expander(title):
            st.markdown(markdown_file(path))

# ----------------------------------------------------------------------- quick retrain
st.divider()
st.header("Retrain one model quickly", anchor="retrain")
st.caption("Launches a background run (recorded in the run registry, visible in the Training studio) and shows "
           "its learning curve and test metrics. SASRec and the CL-EPIDTN family train on every prefix (causal "
           "windows), the family at the shape of `--quick` (d=64, 2 layers); DSSM, YouTube DNN and MIND on each "
           "user's 10 latest prefixes. A few epochs are a demonstration, not a converged model.")

from recsys import registry  # noqa: E402
from recsys.sequential.experiments import QUICK  # noqa: E402
from recsys.sequential.stats import METRIC_LABELS, display_name  # noqa: E402
from recsys.sequential.training import recipe as sequential_recipe  # noqa: E402
from recsys.sequential.training import variants  # noqa: E402
from recsys.train.runs import RunRegistry  # noqa: E402
from recsys.viz.figures import metric_names  # noqa: E402

recipes = {spec.name: sequential_recipe(spec) for spec in registry.by_domain("sequential") if spec.kind == "neural"}
if not recipes:
    st.info("No sequential recipes are registered.")
else:
    c1, c2, c3 = st.columns(3)
    model_name = c1.selectbox("Model", list(recipes), format_func=display_name, key="retrain_model")
    dataset = c2.selectbox("Dataset", ["ml-100k", "anime"], key="retrain_dataset")
    epochs = c3.number_input("Epochs", min_value=1, max_value=20, value=3, key="retrain_epochs")
    if st.button("Train", type="primary", key="retrain_train"):
        runs = RunRegistry()
        options = {"dataset": dataset, **(QUICK.cl_overrides if model_name in variants() else {})}
        run = runs.create(model_name, recipes[model_name].config(epochs=int(epochs)), options)
        runs.launch(run)
        st.session_state["retrain_run"] = run.id
        st.success(f"launched run {run.id}")

    def summary_table(summary: dict) -> pd.DataFrame:
        """The run's final record as a small table: test metrics with their labels, 4 decimals."""
        rows = []
        for name, value in summary.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric = name.removeprefix("test_")
            label = f"test {METRIC_LABELS.get(metric, metric)}" if name.startswith("test_") else name.replace("_", " ")
            if isinstance(value, int) or float(value).is_integer():
                shown = f"{value:g}"
            else:
                shown = f"{value:.1f}" if "seconds" in name else f"{value:.4f}"
            rows.append({"result": label, "value": shown})
        return pd.DataFrame(rows)

    def show_run() -> None:
        run_id = st.session_state.get("retrain_run")
        if not run_id:
            return
        try:
            run = RunRegistry().get(run_id)
        except KeyError:
            st.warning(f"run {run_id} is gone")
            return
        status = run.status()
        st.markdown(f"Run `{run.id}` ({display_name(run.recipe)}): **{status['status']}**")
        if status.get("error"):  # may quote file paths or data: plain text, never Markdown
            st.text(str(status["error"]))
        records = run.metrics()
        if records:
            histories = {display_name(run.recipe): records}
            shown = [m for m in metric_names(histories) if not m.endswith("loss")]
            metric = st.selectbox("Validation metric", shown, format_func=lambda m: METRIC_LABELS.get(m, m),
                                  key="retrain_metric") if shown else None
            loss_col, metric_col = st.columns(2)  # loss and metric never share an axis
            loss = curves_figure(histories, "train_loss", title="training loss").update_yaxes(title_text="loss")
            loss_col.plotly_chart(loss, width="stretch", key="retrain_loss")
            if metric:
                label = f"validation {METRIC_LABELS.get(metric, metric)}"
                figure = curves_figure(histories, metric, title=label).update_yaxes(title_text=label)
                metric_col.plotly_chart(figure, width="stretch", key="retrain_val")
        summary = status.get("summary")
        if isinstance(summary, dict) and summary:
            table = summary_table(summary)
            if not table.empty:
                st.dataframe(table, hide_index=True, width="content", key="retrain_summary")
            for name in ("dataset", "split"):
                if isinstance(summary.get(name), str):
                    st.caption(f"{name}: {summary[name]}")
        if status["status"] not in ("done", "stopped", "failed", "damaged") and st.button("Stop run", key="retrain_stop"):
            run.request_stop()

    st.fragment(run_every=2)(show_run)()
