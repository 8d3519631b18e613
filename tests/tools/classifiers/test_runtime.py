from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from tools.classifiers.bundle import Bundle
from tools.classifiers.runtime import (
    autocast_for,
    batch_size_for,
    clear_cache,
    load_model,
    resolve_device,
)
from tools.errors import ModelUnavailableError

from .helpers import write_tiny_bundle


def test_device_resolution():
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(ModelUnavailableError, match="no CUDA"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ModelUnavailableError, match="unknown device"):
        resolve_device("tpu", cuda_available=False)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_and_batching_policy():
    assert isinstance(autocast_for("cpu"), nullcontext)
    ctx = autocast_for("cuda")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16
    assert batch_size_for("cuda") > batch_size_for("cpu")


def test_weights_load_once_and_batches_match_single(tmp_path):
    clear_cache()
    bundle = Bundle.read(write_tiny_bundle(tmp_path, "tiny"))
    a = load_model(bundle, "cpu")
    b = load_model(Bundle.read(bundle.path), "cpu")
    assert a is b
    x = np.random.default_rng(0).normal(size=(5, 1, 28, 28)).astype(np.float32)
    logits, feats = a.predict(x, batch_size=2)
    single, _ = a.predict(x[3:4])
    assert logits.shape == (5, 2) and feats.shape == (5, 8)
    np.testing.assert_allclose(logits[3], single[0], atol=1e-5)
    clear_cache()


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    bundle = Bundle.read(write_tiny_bundle(tmp_path, "tiny"))
    x = np.random.default_rng(0).normal(size=(300, 1, 28, 28)).astype(np.float32)
    cpu, _ = load_model(bundle, "cpu").predict(x)
    gpu, _ = load_model(bundle, "cuda").predict(x)
    np.testing.assert_allclose(cpu, gpu, atol=5e-2)
