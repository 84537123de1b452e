"""Each operation's tensor work as a traced graph: the same answers as the eager module, at any batch size, and the
eager module whenever tracing fails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from service.catalog.registry import ServedModel, load_registry
from service.engine import graphs


@pytest.fixture(scope="module")
def models(served_models: Path) -> dict[str, ServedModel]:
    return load_registry(served_models, torch.device("cpu"), skip_bad=False).models


@pytest.mark.parametrize("name", ["ae-6", "vae-2"])
@pytest.mark.parametrize("operation", ["encode", "reconstruct", "decode"])
def test_a_traced_graph_answers_like_the_eager_module_at_any_batch_size(
    models: dict[str, ServedModel], name: str, operation: str
) -> None:
    model = models[name]
    cache: dict[str, graphs.Graph] = {}
    traced = graphs.graph(cache, operation, model.network, model.centroids)
    assert isinstance(traced, torch.jit.ScriptModule) and cache[operation] is traced
    assert graphs.graph(cache, operation, model.network, model.centroids) is traced  # traced once
    eager, inputs = graphs._module_and_inputs(operation, model.network, model.centroids)
    for batch in (1, 5, 64):
        given = inputs(batch)
        with torch.inference_mode():
            expected, got = eager(*given), traced(*given)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        assert (
            len(got)
            == len(expected)
            == {"encode": 2, "reconstruct": 5, "decode": 1}[operation]
            + ({"encode": 1, "reconstruct": 3, "decode": 0}[operation] if model.kind == "vae" else 0)
        )
        for a, b in zip(expected, got, strict=True):
            assert a.shape == b.shape and a.shape[0] == batch
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_when_tracing_fails_the_eager_module_serves_and_the_log_says_why(
    models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no tracing today")

    monkeypatch.setattr(torch.jit, "trace", broken)
    model = models["ae-6"]
    with caplog.at_level(logging.WARNING, logger="digitae.graphs"):
        found = graphs.graph({}, "decode", model.network, model.centroids)
    assert isinstance(found, graphs.Decode) and not isinstance(found, torch.jit.ScriptModule)
    assert "decode runs eagerly" in caplog.text and "no tracing today" in caplog.text
    z = torch.zeros(3, model.latent_dim)
    with torch.inference_mode():
        assert found(z).shape == (3, 1, 28, 28)


def test_a_graph_that_disagrees_with_the_eager_module_is_not_served(
    models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch, "allclose", lambda *args, **kwargs: False)
    model = models["vae-2"]
    with caplog.at_level(logging.WARNING, logger="digitae.graphs"):
        found = graphs.graph({}, "encode", model.network, model.centroids)
    assert isinstance(found, graphs.Encode) and "differ" in caplog.text
