"""The inference engine's bulk hand-off: the same answers as the micro-batched path, in bounded forward passes."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from service.catalog.registry import load_registry
from service.engine.inference import InferenceEngine
from service.settings import Settings
from tests.support import shifted_digits


def test_a_bulk_chunk_runs_in_passes_of_the_micro_batch_size_with_the_micro_batched_answers(
    served_models: Path,
) -> None:
    settings = Settings(models_dir=served_models, microbatch_max_size=8)
    model = load_registry(served_models, torch.device("cpu"), skip_bad=False).models["ae-6"]
    passes: list[tuple[str, int]] = []
    engine = InferenceEngine(settings, observe=lambda name, operation, size, _: passes.append((operation, size)))
    images = [digit.astype(np.float32) / 255 for digit in shifted_digits(19)]

    async def both() -> tuple[list, list, list, list]:
        try:
            bulk = await engine.in_bulk(model, "encode", images)
            single = await engine.encode(model, images)
            recon = await engine.in_bulk(model, "reconstruct", [(x, x) for x in images[:3]])
            decoded = await engine.in_bulk(model, "decode", [e.latent for e in bulk[:2]])
            return bulk, single, recon, decoded
        finally:
            await engine.close()

    bulk, single, recon, decoded = asyncio.run(both())
    assert [p for p in passes if p[0] == "encode"][:3] == [("encode", 8), ("encode", 8), ("encode", 3)]
    assert ("reconstruct", 3) in passes and ("decode", 2) in passes
    assert len(bulk) == len(single) == 19
    for a, b in zip(bulk, single, strict=True):
        np.testing.assert_allclose(a.latent, b.latent, rtol=1e-5, atol=1e-6)
        assert a.nearest_digit == b.nearest_digit
    assert len(recon) == 3 and recon[0].image.shape == (28, 28) and recon[0].mse >= 0
    assert [d.shape for d in decoded] == [(28, 28), (28, 28)]


def test_warm_up_builds_the_graphs_of_each_operation(served_models: Path) -> None:
    model = load_registry(served_models, torch.device("cpu"), skip_bad=False).models["ae-6"]
    assert not model.graphs
    InferenceEngine(Settings(models_dir=served_models)).warm_up(model)
    assert {"encode", "reconstruct", "decode"} <= set(model.graphs), f"graphs built: {sorted(model.graphs)}"


def test_a_model_that_fails_to_warm_up_is_logged_not_fatal(
    served_models: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from service.engine import inference

    def broken(*args: object) -> None:
        raise RuntimeError("a graph that cannot run")

    monkeypatch.setattr(inference, "encode_batch", broken)
    model = load_registry(served_models, torch.device("cpu"), skip_bad=False).models["ae-6"]
    with caplog.at_level(logging.WARNING, logger="digitae.inference"):
        InferenceEngine(Settings(models_dir=served_models)).warm_up(model)
    assert "warming up ae-6 failed" in caplog.text


def test_warm_up_soon_runs_in_the_inference_thread_then_calls_back_on_the_event_loop(served_models: Path) -> None:
    model = load_registry(served_models, torch.device("cpu"), skip_bad=False).models["ae-6"]
    engine = InferenceEngine(Settings(models_dir=served_models))
    called_on: list[int] = []

    async def scenario() -> int:
        try:
            engine.warm_up_soon(model, then=lambda: called_on.append(threading.get_ident()))
            for _ in range(600):
                if called_on:
                    break
                await asyncio.sleep(0.05)
            return threading.get_ident()
        finally:
            await engine.close()

    loop_thread = asyncio.run(scenario())
    assert called_on == [loop_thread], "`then` runs once, on the event loop, after the pass"
    assert {"encode", "reconstruct", "decode"} <= set(model.graphs), f"graphs built: {sorted(model.graphs)}"
