"""Run a sentence-transformers model with ONNX Runtime: an export made once, offline, on this machine.

The export wraps the transformer with its mean pooling and L2 normalisation, so the ONNX graph
returns sentence vectors directly (the same vectors as sentence-transformers, to float precision).
``int8=True`` adds ONNX Runtime's dynamic quantisation (int8 weights, float activations): about a
quarter of the size and faster on CPU, at a small cost in retrieval quality (see bench/retrieval.py).
Exports are cached under ``config.cache_dir / "embeddings"``, keyed by the model files' hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tools.errors import ModelUnavailableError

log = logging.getLogger(__name__)


def _model_hash(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin", ".txt"):
            digest.update(path.relative_to(model_dir).as_posix().encode())
            digest.update(str(path.stat().st_size).encode())
            with path.open("rb") as fh:
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def _check_mean_pooling(model_dir: Path) -> int:
    """The model's max sequence length; refuse models whose pooling is not mean pooling."""
    pooling = next(model_dir.glob("*Pooling/config.json"), None)
    if pooling is not None:
        config = json.loads(pooling.read_text())
        if not config.get("pooling_mode_mean_tokens", False):
            raise ModelUnavailableError(f"the ONNX embedding backend supports mean-pooling models only; "
                                        f"{model_dir.name} uses another pooling: use embedding_backend=torch")
    sbert = model_dir / "sentence_bert_config.json"
    return int(json.loads(sbert.read_text()).get("max_seq_length", 256)) if sbert.is_file() else 256


def export(model_dir: Path, target: Path) -> None:
    """Export the transformer + mean pooling + normalisation to ``target`` (ONNX, fp32)."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dynamic["embedding"] = {0: "batch"}
    tmp = target.with_suffix(f".{os.getpid()}.tmp")  # concurrent first runs never share a file
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about constant shapes: checked by the tests
        torch.onnx.export(Pooled(model), (ids, ids, torch.zeros_like(ids)), str(tmp),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["embedding"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    os.replace(tmp, target)


def quantize(source: Path, target: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - onnxruntime comes with chromadb
        raise ModelUnavailableError(f"int8 embeddings need onnxruntime: {exc}") from None
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ModelUnavailableError("embedding_backend=onnx-int8 needs the `onnx` package: pip install onnx") from None
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    logging.disable(logging.WARNING)  # onnxruntime suggests pre-processing on the root logger
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    os.replace(tmp, target)


class OnnxEncoder:
    """Tokenizer (the model's tokenizer.json) + ONNX Runtime session returning normalised vectors."""

    def __init__(self, model_dir: Path, cache_dir: Path, int8: bool) -> None:
        from tokenizers import Tokenizer

        max_len = _check_mean_pooling(model_dir)
        folder = cache_dir / "embeddings" / f"{model_dir.name}-{_model_hash(model_dir)}"
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = folder / "model.onnx"
        path = folder / ("model-int8.onnx" if int8 else "model.onnx")
        if not path.exists():
            log.info("exporting %s to ONNX in %s (once)", model_dir, folder)
            if not fp32.exists():
                export(model_dir, fp32)
            if int8:
                quantize(fp32, path)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        # idle worker threads sleep instead of spinning: on a busy CPU (other processes, the LLM) spinning
        # burns the time the other threads need; measured 8% less CPU per text on 2 cores, same vectors
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.no_padding()
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")  # little padding per batch
        out = np.zeros((len(texts), 0), dtype=np.float32)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, i in enumerate(idx):
                e = encodings[i]
                ids[row, :len(e.ids)] = e.ids
                mask[row, :len(e.ids)] = 1
                types[row, :len(e.ids)] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            vectors = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            parts.append((idx, vectors))
        if parts:
            out = np.zeros((len(texts), parts[0][1].shape[1]), dtype=np.float32)
            for idx, vectors in parts:
                out[idx] = vectors
        return out
