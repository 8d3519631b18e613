"""Network wrappers that bundles can name in their ``network_def`` (MONAI networks stay the members).

``LogitEnsemble`` averages the logits of several member networks: a small deep ensemble, which improves
ranking and calibration on small training sets. Members are instantiated by ``monai.bundle.ConfigParser``
from nested ``_target_`` configs, so a bundle still declares every layer in its JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LogitEnsemble(nn.Module):
    """Mean of member logits. ``members`` are modules mapping (N, C, H, W) -> (N, K)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=0).mean(dim=0)
