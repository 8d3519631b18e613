"""One MONAI bundle on disk: read, check against its network, load weights; and write.

Layout (MONAI bundle convention)::

    NAME/
      configs/metadata.json    model card: labels, input spec, intended use, training data, metrics,
                               calibration (temperature, threshold), OOD statistics, and what it
                               covers (findings, modality, body part, summary: coverage.py)
      configs/network.json     {"network_def": {"_target_": "monai.networks.nets....", ...}}
                               (configs/inference.json with a ``network_def`` key is read too)
      models/model.pt          the state_dict (torch.save), loaded with weights_only=True

Checks at load: the network instantiates through ``monai.bundle.ConfigParser``; a dummy forward pass of
the declared input shape succeeds and yields one logit per label; the weights match the network.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.classifiers.coverage import Coverage, from_metadata
from tools.classifiers.preprocess import Preprocessing
from tools.errors import BundleError, ModelUnavailableError

# torch loads on first use (building or loading a network): listing the bundles and what they cover, which
# every consultation does, reads only their metadata
if TYPE_CHECKING:
    import torch
    from torch import nn

    from tools.classifiers.ood import MahalanobisOOD

log = logging.getLogger(__name__)

METADATA = Path("configs") / "metadata.json"
NETWORK_CONFIGS = (Path("configs") / "network.json", Path("configs") / "inference.json")
WEIGHTS = Path("models") / "model.pt"
TTA_VIEWS = ("hflip", "aspect")  # test-time views a bundle may name (runtime.tta_views)


def instantiate_network(network_def: dict[str, Any], config: dict[str, Any] | None = None) -> nn.Module:
    """Build the network from a MONAI config dict (``_target_`` plus arguments).

    ``config`` is the whole config file it came from, so ``@name`` references resolve as in MONAI.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser({**(config or {}), "network_def": network_def})
    net = parser.get_parsed_content("network_def", instantiate=True)
    from torch import nn

    if not isinstance(net, nn.Module):
        raise BundleError(f"network_def builds a {type(net).__name__}, not a torch nn.Module")
    return net


@dataclass(frozen=True, eq=False)
class Bundle:
    """A classifier bundle directory with its parsed metadata. Cheap to construct: no weights read."""

    path: Path
    metadata: dict[str, Any]
    network_def: dict[str, Any] = field(repr=False)
    network_config: dict[str, Any] = field(default_factory=dict, repr=False)  # the file it came from

    # --- reading ---------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: Path) -> Bundle:
        """Parse the configs of the bundle at ``path``; BundleError when they are missing or malformed."""
        path = Path(path)
        meta_path = path / METADATA
        if not meta_path.is_file():
            raise BundleError(f"{path.name}: not a MONAI bundle (no {METADATA})")
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path.name}: {METADATA} is not valid JSON ({exc})") from exc
        network_def, cfg = None, {}
        for rel in NETWORK_CONFIGS:
            if (path / rel).is_file():
                try:
                    cfg = json.loads((path / rel).read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as exc:
                    raise BundleError(f"{path.name}: {rel} is not valid JSON ({exc})") from exc
                network_def = cfg.get("network_def") if isinstance(cfg, dict) else None
                if network_def is not None:
                    break
        if not isinstance(network_def, dict) or "_target_" not in network_def:
            raise BundleError(f"{path.name}: no network_def with a _target_ in configs/network.json "
                              "or configs/inference.json")
        if not isinstance(metadata, dict):
            raise BundleError(f"{path.name}: {METADATA} must hold a JSON object")
        bundle = cls(path=path, metadata=metadata, network_def=network_def, network_config=cfg)
        bundle._check_metadata()
        return bundle

    def _check_metadata(self) -> None:
        labels = self.metadata.get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise BundleError(f"{self.name}: metadata 'labels' must list at least two label names")
        if self.positive_label not in labels:
            raise BundleError(f"{self.name}: positive_label {self.positive_label!r} is not one of {labels}")
        out = self.metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {})
        if out.get("num_channels") not in (None, len(labels)):
            raise BundleError(f"{self.name}: metadata declares {out['num_channels']} output channels "
                              f"but {len(labels)} labels")
        if self.temperature <= 0:
            raise BundleError(f"{self.name}: calibration temperature must be > 0")
        if not 0.0 <= self.threshold <= 1.0:
            raise BundleError(f"{self.name}: decision threshold must lie in [0, 1]")
        _ = self.preprocess_spec  # raises BundleError when malformed
        _ = self.coverage
        unknown = [v for v in self.tta if v not in TTA_VIEWS]
        if unknown:
            raise BundleError(f"{self.name}: unknown test-time views {unknown}; use {', '.join(TTA_VIEWS)}")

    # --- fields ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or self.path.name)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "0"))

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    @property
    def positive_label(self) -> str:
        return str(self.metadata.get("positive_label") or self.metadata["labels"][-1])

    @property
    def input_channels(self) -> int:
        image = self.metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
        return int(image.get("num_channels", 1))

    @property
    def input_size(self) -> tuple[int, int]:
        size = self.preprocessing.get("size") or self.metadata.get("network_data_format", {}).get(
            "inputs", {}).get("image", {}).get("spatial_shape", [28, 28])
        return int(size[0]), int(size[1])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.metadata.get("preprocessing", {}))

    @cached_property
    def preprocess_spec(self) -> Preprocessing:
        """The input pipeline the bundle was trained with (see :mod:`tools.classifiers.preprocess`)."""
        try:
            return Preprocessing.from_metadata(self.preprocessing, self._declared_size())
        except BundleError as exc:
            raise BundleError(f"{self.name}: {exc}") from exc

    def _declared_size(self) -> tuple[int, int]:
        size = self.metadata.get("network_data_format", {}).get("inputs", {}).get("image", {}).get(
            "spatial_shape", [28, 28])
        return int(size[0]), int(size[1])

    @property
    def multiclass(self) -> bool:
        """More than two labels: the decision is the most probable label (no threshold)."""
        return len(self.labels) > 2

    @property
    def statement(self) -> str | None:
        """What every result of this model must say about its scope (e.g. "given a tumour is present")."""
        text = self.metadata.get("result_statement")
        return str(text) if text else None

    @cached_property
    def coverage(self) -> Coverage:
        """The findings it answers and what it reads (``metadata["coverage"]``, see :mod:`coverage`)."""
        return from_metadata(self.metadata, self.name)

    @property
    def mean(self) -> float:
        return float(self.preprocessing.get("mean", 0.0))

    @property
    def std(self) -> float:
        return float(self.preprocessing.get("std", 1.0))

    @property
    def temperature(self) -> float:
        return float(self.metadata.get("calibration", {}).get("temperature", 1.0))

    @property
    def threshold(self) -> float:
        return float(self.metadata.get("calibration", {}).get("threshold", 0.5))

    @property
    def tta(self) -> list[str]:
        return list(self.metadata.get("tta", []))

    @property
    def saliency_layer(self) -> str | None:
        return self.metadata.get("saliency", {}).get("target_layer")

    @property
    def feature_layer(self) -> str | None:
        """Layer whose input is the OOD feature vector; None means the last nn.Linear."""
        return (self.metadata.get("ood") or {}).get("feature_layer")

    @property
    def intended_use_rules(self) -> dict[str, Any]:
        return dict(self.metadata.get("intended_use_rules", {}))

    @cached_property
    def ood(self) -> MahalanobisOOD | None:
        data = self.metadata.get("ood")
        if not data or "means" not in data:
            return None
        from tools.classifiers.ood import MahalanobisOOD

        try:
            return MahalanobisOOD.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{self.name}: malformed OOD statistics ({exc})") from exc

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS

    def card(self) -> dict[str, Any]:
        """The model card every result carries: what it is, what it was trained on, how well it does."""
        m = self.metadata
        return {
            "name": self.name, "version": self.version, "task": m.get("task"),
            "description": m.get("description"), "architecture": m.get("architecture"),
            "intended_use": m.get("intended_use"), "training_data": m.get("data_source"),
            "data_licence": m.get("data_licence"), "labels": self.labels,
            "positive_label": self.positive_label, "metrics": m.get("metrics", {}),
            "calibration": m.get("calibration", {}), "limitations": m.get("limitations"),
            "result_statement": self.statement, "references": m.get("references", []),
        }

    # --- network ---------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """Instantiate the network and check it against the metadata (no weights yet)."""
        import torch

        try:
            net = instantiate_network(self.network_def, self.network_config)
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"{self.name}: the network_def does not instantiate: {exc}") from exc
        h, w = self.input_size
        net.eval()
        try:
            with torch.inference_mode():
                out = net(torch.zeros(1, self.input_channels, h, w))
        except Exception as exc:
            raise BundleError(f"{self.name}: the network does not accept the declared input "
                              f"({self.input_channels} channel(s), {h}x{w}): {exc}") from exc
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != len(self.labels):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise BundleError(f"{self.name}: the network outputs {shape} for one image but the metadata "
                              f"lists {len(self.labels)} labels {self.labels}")
        return net

    def load_network(self) -> nn.Module:
        """Network with its weights, in eval mode. ModelUnavailableError when weights are missing."""
        import torch

        net = self.build_network()
        if not self.weights_path.is_file():
            raise ModelUnavailableError(f"{self.name}: weights file {WEIGHTS} is missing from the bundle "
                                        f"at {self.path}; reinstall it or run `radconsult models train`")
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelUnavailableError(f"{self.name}: cannot read {WEIGHTS}: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise BundleError(f"{self.name}: {WEIGHTS} does not hold a state_dict")
        # weights may be stored in float16 to keep bundles small; the network computes in float32
        reference = net.state_dict()
        state = {k: v.to(reference[k].dtype) if k in reference and torch.is_tensor(v) and v.is_floating_point()
                 else v for k, v in state.items()}
        try:
            net.load_state_dict(state)
        except Exception as exc:
            raise BundleError(f"{self.name}: the weights do not match the network: {exc}") from exc
        net.eval()
        return net


def write_bundle(path: Path, metadata: dict[str, Any], network_def: dict[str, Any],
                 state_dict: dict[str, torch.Tensor] | None, weights_dtype: torch.dtype | None = None) -> Path:
    """Write a bundle directory (configs and, when given, weights). Returns ``path``.

    ``weights_dtype=torch.float16`` stores floating-point tensors at half precision (half the file size;
    :meth:`Bundle.load_network` casts them back to the network's float32).
    """
    import torch

    path = Path(path)
    (path / "configs").mkdir(parents=True, exist_ok=True)
    (path / METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    (path / NETWORK_CONFIGS[0]).write_text(json.dumps({"network_def": network_def}, indent=2) + "\n",
                                           encoding="utf-8")
    if state_dict is not None:
        (path / "models").mkdir(parents=True, exist_ok=True)
        def stored(v: torch.Tensor) -> torch.Tensor:
            v = v.detach().cpu().contiguous()
            return v.to(weights_dtype) if weights_dtype is not None and v.is_floating_point() else v

        torch.save({k: stored(v) for k, v in state_dict.items()}, path / WEIGHTS)
    return path
