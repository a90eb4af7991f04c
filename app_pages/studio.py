"""Training studio: launch any registered recipe, watch it train, stop it, compare and serve runs.

Runs execute in detached worker processes (``recsys.train.runs``), so they survive
page reloads and are visible from every browser tab; this page only reads and
writes the run folders.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re

import pandas as pd
import streamlit as st
import torch

from recsys.train.compare import legend_labels, serving_warning
from recsys.train.recipes import all_recipes
from recsys.train.runs import FINAL_STATUSES, RunRegistry
from recsys.viz.figures import curves_figure, metric_names

LIVE = ("queued", "running")
STATUS_ICON = {"queued": "⏳", "running": "🏃", "done": "✅", "stopped": "⏹️", "failed": "❌", "damaged": "⚠️"}

def plain(text) -> str:
    """``text`` with Markdown syntax escaped: run files are untrusted, so their text never renders as links."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:])", r"\\\1", str(text))


st.title("🏋️ Training studio")
st.caption(
    "Train any registered model in a background worker. Runs keep going when you reload or close the page; "
    "one run per device trains at a time and the others wait as *queued*."
)

registry = RunRegistry()
recipe_errors: list[str] = []
recipes = all_recipes(recipe_errors)  # a broken domain is reported, the others stay trainable
for problem in recipe_errors:
    st.warning(plain(problem), icon="⚠️")
if registry.active_problem():
    st.warning(f"{plain(registry.active_problem())}; the pages serve the shipped models until a run is served again.")

cuda = torch.cuda.is_available()
cuda_name = torch.cuda.get_device_name(0) if cuda else None
cuda_count = torch.cuda.device_count() if cuda else 0


def _fmt_time(stamp) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%H:%M:%S") if stamp else ""


def _epochs_total(run) -> int | str:
    """The run's configured epochs, or "?" for a damaged run."""
    try:
        return int(run.config["train"].get("epochs", 0))
    except (ValueError, TypeError):
        return "?"


# ------------------------------------------------------------------------------------------------
# launch
# ------------------------------------------------------------------------------------------------
st.subheader("New run")
if not recipes:
    st.info("No trainable models could be loaded: see the errors above, or `python -m recsys runs models`.")
else:
    names = list(recipes)

    def apply_defaults() -> None:
        """Reset the settings to the chosen recipe's quick defaults (also on first load)."""
        d = recipes[st.session_state["studio_recipe"]].defaults
        st.session_state.update(
            studio_epochs=int(d.epochs), studio_lr=float(d.lr), studio_batch=int(d.batch_size),
            studio_seed=int(d.seed), studio_device="cuda" if cuda and d.device != "cpu" else "cpu",
        )

    if st.session_state.get("studio_recipe") not in names:
        st.session_state["studio_recipe"] = names[0]
        apply_defaults()
    name = st.selectbox(
        "Model", names, key="studio_recipe", on_change=apply_defaults,
        format_func=lambda n: f"{n}  ·  {recipes[n].domain}  ·  {recipes[n].summary}",
    )
    recipe = recipes[name]
    c1, c2, c3, c4, c5, c6 = st.columns([1, 1, 1, 1, 1.4, 1])
    epochs = c1.number_input("Epochs", 1, 10_000, key="studio_epochs")
    lr = c2.number_input("Learning rate", 1e-6, 10.0, format="%.5f", key="studio_lr")
    batch_size = c3.number_input("Batch size", 1, 1 << 16, key="studio_batch")
    seed = c4.number_input("Seed", 0, 2**31 - 1, key="studio_seed")
    device = c5.radio("Device", ["cpu", "cuda"], horizontal=True, disabled=not cuda, key="studio_device",
                      help="CUDA is offered when torch sees a GPU.")
    c5.caption(f"GPU: {cuda_name}" if cuda else "No CUDA device on this machine: CPU only.")
    most = max(cuda_count if device == "cuda" else (os.cpu_count() or 1), 1)
    if st.session_state.get("studio_nproc", 1) > most:  # e.g. 2 CPU processes, then CUDA with one GPU
        st.session_state["studio_nproc"] = most
    nproc = c6.number_input("Processes", 1, most, key="studio_nproc",
                            help="Data-parallel training on this many processes (torchrun + DistributedDataParallel: "
                                 "gloo on the CPU, one GPU each on CUDA). The batch size stays the global one.")
    options = {}
    if recipe.options:
        with st.expander("Model options"):
            for key, value in recipe.options.items():
                widget_key = f"opt_{name}_{key}"
                if isinstance(value, bool):
                    options[key] = st.checkbox(key, value, key=widget_key)
                elif isinstance(value, int):
                    options[key] = int(st.number_input(key, value=value, step=1, key=widget_key))
                elif isinstance(value, float):
                    options[key] = float(st.number_input(key, value=value, format="%.5g", key=widget_key))
                else:
                    options[key] = st.text_input(key, "" if value is None else str(value), key=widget_key)
    if recipe.full is not None:
        st.caption(f"Quick defaults shown; the paper's settings: {recipe.full.epochs} epochs, lr {recipe.full.lr}, "
                   f"batch {recipe.full.batch_size} (CLI: `python -m recsys train {name} --full`).")
    if st.button("Launch", type="primary", key="launch"):
        config = recipe.config(epochs=int(epochs), lr=float(lr), batch_size=int(batch_size), seed=int(seed),
                               device=device)
        try:
            run = registry.create(name, config, options, nproc=int(nproc))
            registry.launch(run)
        except Exception as error:
            st.error(f"Could not launch: {type(error).__name__}: {error}")
        else:
            st.session_state["studio_watch"] = run.id
            st.session_state["studio_watch_select"] = run.id  # the run picker below follows the new run
            st.toast(f"Launched {run.id}")

# ------------------------------------------------------------------------------------------------
# live view and registry (one fragment that polls while anything is queued or running)
# ------------------------------------------------------------------------------------------------
rendered = {run.id: run.status()["status"] for run in registry.list()}
any_live = any(state in LIVE for state in rendered.values())


@st.fragment(run_every=3)
def watch_statuses() -> None:
    """Rerun the page when any run appears, disappears or changes status, wherever it was launched.

    Why: the run picker and the table say each run's status; without this, a run launched
    from the shell or another tab, or one that finished while nothing was polling, kept
    showing "(running)". Reading the status files is cheap; the charts redraw only on a change.
    """
    now = {run.id: run.status()["status"] for run in registry.list()}
    if now != rendered:
        st.rerun()


watch_statuses()


@st.fragment(run_every=2 if any_live else None)
def live_and_registry() -> None:
    runs = registry.list()
    statuses = {run.id: run.status() for run in runs}
    live_now = any(s["status"] in LIVE for s in statuses.values())
    if any_live and not live_now:
        st.rerun()  # everything finished: one full rerun turns polling off
    if not runs:
        st.info("No runs yet. Launch one above, or from the shell: `python -m recsys train MODEL`.")
        return

    st.subheader("Watch a run")
    ids = [run.id for run in runs]
    watched = st.session_state.get("studio_watch")
    if st.session_state.get("studio_watch_select") not in ids:  # first visit, or the run was deleted
        st.session_state["studio_watch_select"] = watched if watched in ids else ids[0]
    run_id = st.selectbox("Run", ids, key="studio_watch_select",
                          format_func=lambda i: f"{STATUS_ICON.get(statuses[i]['status'], '')} {i} "
                                                f"({statuses[i]['status']})")
    if run_id != watched:
        st.session_state["studio_watch"] = run_id
    run = registry.get(run_id)
    status = statuses[run_id]
    records = run.metrics()
    epochs_total = _epochs_total(run)
    left, right = st.columns([3, 1])
    with left:
        state = status["status"]
        processes = status.get("nproc", 1)
        line = (f"**{state}** · {plain(run.recipe or '?')} · device {plain(status.get('device', '?'))}"
                f"{f' x {processes} processes' if isinstance(processes, int) and processes > 1 else ''} · "
                f"epoch {len(records)}/{epochs_total}")
        last = records[-1] if records else {}
        if isinstance(last.get("examples"), (int, float)) and isinstance(last.get("train_seconds"), (int, float)) \
                and last["train_seconds"] > 0:  # every process's examples together
            line += f" · {last['examples'] / last['train_seconds']:,.0f} examples/s"
        if state == "running" and status.get("step"):
            line += f" · step {status['step']}, last batch loss {status.get('batch_loss', float('nan')):.4g}"
        st.markdown(line)
        if state in LIVE and isinstance(epochs_total, int):
            st.progress(min(len(records) / max(epochs_total, 1), 1.0))
        if state in ("failed", "damaged"):
            st.error(f"{state.capitalize()}: {plain(status.get('error', 'unknown error'))}")
        elif state == "stopped":
            st.warning(f"Stopped{': ' + plain(status['error']) if status.get('error') else ''}")
        elif state == "done" and status.get("summary"):
            st.success("Done: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in status["summary"].items()))
    with right:
        if state in LIVE:
            if run.stop_requested():
                st.button("Stopping…", disabled=True, key="stopping")
            elif st.button("Stop", key="stop_watched", type="primary"):
                run.request_stop()
                st.rerun(scope="fragment")
    if records:
        metrics = metric_names({run_id: records})
        chart_left, chart_right = st.columns(2)
        chart_left.plotly_chart(curves_figure({run_id: records}, "train_loss", title="training loss"),
                                key="live_loss")
        others = [m for m in metrics if m != "train_loss"]
        if others:
            chosen = chart_right.selectbox("Validation metric", others, key="live_metric")
            chart_right.plotly_chart(curves_figure({run_id: records}, chosen, height=260), key="live_metric_chart")
    elif state in LIVE:
        st.info("Waiting for the first epoch to finish…" if state == "running" else
                "Queued: waiting for the device (another run is training on it).")
    with st.expander("Log"):
        st.code(run.log_tail(40) or "(empty)", language=None)

    # --- registry ---------------------------------------------------------------------------------
    st.subheader("All runs")
    active = {recipe_name: registry.active_run(recipe_name) for recipe_name in {r.recipe for r in runs} if recipe_name}
    served = {r.id for r in active.values() if r is not None}
    rows = []
    for r in runs:
        s = statuses[r.id]
        summary = s.get("summary") or {}
        rows.append({
            "run": r.id, "model": r.recipe, "status": f"{STATUS_ICON.get(s['status'], '')} {s['status']}",
            "epochs": f"{s.get('epoch', len(r.metrics()) if s['status'] in FINAL_STATUSES else 0)}"
                      f"/{_epochs_total(r)}",
            "result": ", ".join(f"{k}={v:.4g}" for k, v in summary.items()
                                if isinstance(v, float) and math.isfinite(v)),
            "served": "●" if r.id in served else "",
            "error": s.get("error", "") if s["status"] in ("failed", "stopped", "damaged") else "",
            "started": _fmt_time(s.get("started")),
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="runs_table")

    # the comparison follows the watched run: it replaces the previously watched one (others stay)
    chosen = [i for i in st.session_state.get("compare_runs", []) if i in ids]  # deleted runs drop out
    previous = st.session_state.get("compare_follows")
    if previous != run_id:
        chosen = [run_id if i == previous else i for i in chosen]
        if run_id not in chosen:
            chosen.insert(0, run_id)
        chosen = list(dict.fromkeys(chosen))
    st.session_state["compare_runs"] = chosen
    st.session_state["compare_follows"] = run_id
    compare = st.multiselect("Compare runs", ids, key="compare_runs",
                             help="Follows the watched run; add others to compare. The legend names each "
                                  "run's model and the settings that differ between the runs shown.")
    if compare:
        compared = [registry.get(i) for i in compare]
        histories = {r.id: r.metrics() for r in compared}
        names = metric_names(histories)
        if names:
            metric = st.selectbox("Metric", names, key="compare_metric")
            st.plotly_chart(curves_figure(histories, metric, labels=legend_labels(compared)), key="compare_chart")

    st.markdown(f"**Selected run** `{run_id}`")
    a, b, c = st.columns(3)
    can_serve = status["status"] == "done" and run.checkpoint_path.exists()
    warning = serving_warning(registry, run) if can_serve and run_id not in served else None
    if warning:
        st.warning(warning, icon="⚠️")
    if a.button("Serve this checkpoint", disabled=not can_serve or run_id in served, key="serve",
                help="The Ask and Anime pages use the served run of each model."):
        registry.set_active(run_id)
        st.rerun()
    if run_id in served and b.button("Stop serving", key="unserve"):
        registry.clear_active(run.recipe)
        st.rerun()
    if c.button("Delete", disabled=status["status"] in LIVE, key="delete"):
        registry.delete(run_id)
        st.session_state.pop("studio_watch", None)
        st.rerun()


live_and_registry()
