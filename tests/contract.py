"""The checks every registered model must pass; each domain's contract test calls them on tiny data.

``check_contract(spec, data, batch, tmp_path)``:

1. the model is built the one way, ``spec.build(data)``, and fitted (``fit(data)``) or
   trained for a step (``calculate_loss`` gives a finite scalar with gradients);
2. ``full_sort_predict(batch)`` has shape ``[B, model.n_columns]``; the padding column,
   if any, is ``-inf`` and no other score is NaN;
3. ``predict(batch)`` equals ``full_sort_predict`` gathered at ``batch["item"]``;
4. save -> load through :mod:`recsys.checkpoint` gives identical scores.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.checkpoint import load_model, save_model


def fitted_or_stepped(spec, data, batch):
    """A model of ``spec`` ready to score: fitted, or one optimiser step from a seeded start."""
    torch.manual_seed(0)
    model = spec.build(data)
    if spec.kind == "fitted":
        assert model.fit(data) is model, f"{spec.name}.fit must return the model"
    else:
        model.train()
        loss = model.calculate_loss(batch)
        assert loss.ndim == 0 and torch.isfinite(loss), f"{spec.name}: loss {loss}"
        loss.backward()
        torch.optim.SGD(model.parameters(), lr=0.01).step()
        model.eval()
    return model


def scores(model, batch) -> np.ndarray:
    with torch.no_grad():
        return torch.as_tensor(model.full_sort_predict(batch)).float().cpu().numpy()


def check_contract(spec, data, batch, tmp_path) -> None:
    model = fitted_or_stepped(spec, data, batch)
    assert model.kind == spec.kind
    full = scores(model, batch)
    rows = len(batch["item"])
    assert full.shape == (rows, model.n_columns), f"{spec.name}: {full.shape} vs ({rows}, {model.n_columns})"
    assert not np.isnan(full).any(), f"{spec.name}: NaN scores"
    if model.padding_index is not None:
        assert np.isneginf(full[:, model.padding_index]).all(), f"{spec.name}: padding column must be -inf"
        other = np.delete(full, model.padding_index, axis=1)
        assert np.isfinite(other).all(), f"{spec.name}: only the padding column may be -inf"
    with torch.no_grad():
        pairs = torch.as_tensor(model.predict(batch)).float().cpu().numpy()
    items = np.asarray(batch["item"]).reshape(-1)
    np.testing.assert_allclose(pairs, full[np.arange(rows), items], rtol=1e-5, atol=1e-5)

    path = save_model(tmp_path / f"{spec.name}.safetensors", spec.name, model, {"data_fingerprint": "tiny"})
    loaded, meta = load_model(path, data, expect={"model": spec.name, "data_fingerprint": "tiny"})
    assert meta["model"] == spec.name
    np.testing.assert_array_equal(scores(loaded, batch), full)
