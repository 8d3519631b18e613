"""Training recipes of the bundled classifiers: what `radconsult models train NAME` reproduces.

Each recipe fixes the MONAI network, augmentation, optimisation and the model card text; the data file
and seed are arguments. Numbers measured by training are written into the bundle's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.classifiers.augment import AugmentSpec
from tools.classifiers.fitloop import FitSpec
from tools.errors import UnknownNameError

MEDMNIST_LICENCE = "CC BY 4.0 (MedMNIST v2, Yang et al., Scientific Data 2023)"
KERMANY_LICENCE = ("CC BY 4.0: Kermany D, Zhang K, Goldbaum M (2018), Labeled Optical Coherence Tomography (OCT) "
                   "and Chest X-Ray Images for Classification, Mendeley Data, v2, doi:10.17632/rscbjbr9sj.2")
THRESHOLD_RULES = {
    "balanced": "threshold maximises balanced accuracy (Youden's J) on val: independent of prevalence",
    "prior-neutral": "threshold = the positive-class prevalence of val, on the temperature-scaled "
                     "probability: the Bayes decision with equal class priors, i.e. the balanced-accuracy "
                     "optimum of a calibrated model, robust to a prevalence shift",
    "calibrated": "threshold 0.5 on the temperature-scaled probability: the accuracy-optimal choice when "
                  "the prevalence matches training",
}
CHENG_LICENCE = ("CC BY 4.0: Cheng, Jun (2017), brain tumor dataset, figshare, doi:10.6084/m9.figshare.1512427")


def monai_resnet(num_classes: int, widths: tuple[int, ...], layers: tuple[int, ...] = (1, 1, 1, 1)) -> dict[str, Any]:
    """A MONAI ResNet for 200-300 px input: 7x7 stride-2 stem and max-pool (1/4 resolution), basic blocks."""
    return {
        "_target_": "monai.networks.nets.ResNet",
        "block": "basic", "layers": list(layers), "block_inplanes": list(widths),
        "spatial_dims": 2, "n_input_channels": 1, "num_classes": num_classes,
        "conv1_t_size": 7, "conv1_t_stride": 2, "no_max_pool": False,
    }


@dataclass(frozen=True)
class ArchivePlan:
    """How a real-resolution recipe reads its archive and trains (see archives.py and fitloop.py)."""

    kind: str                              # archives.KINDS
    size: tuple[int, int]                  # model input, pixels
    geometry: str                          # preprocess.GEOMETRIES
    fit: FitSpec
    intensity: str = "percentiles"
    border: str = "keep"                   # preprocess.BORDERS
    val_fraction: float = 0.12             # kermany-cxr
    test_fold: int = 5                     # cheng-brain-mri
    val_fold: int = 4
    weights_dtype: str = "float16"         # storage of models/model.pt
    tta_candidates: tuple[tuple[str, ...], ...] = ((),)  # test-time views tried on val; the best is kept


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
    coverage: dict[str, Any] = field(default_factory=dict)  # what it covers (tools/classifiers/coverage.py)
    changes: str = "trained with `radconsult models train`"  # this version's changelog entry
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
    data_licence: str = MEDMNIST_LICENCE
    archive: ArchivePlan | None = None    # real-resolution recipes: the archive layout and training plan
    result_statement: str | None = None   # carried by every result (what the model cannot say)
    anchors: tuple[dict[str, Any], ...] = ()   # published results on the same data, for the model card
    references: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "pneumonia-cxr": Recipe(
        name="pneumonia-cxr", version="3.0.0",
        changes="no left-right flips of chest films; dark margins cut and histogram equalisation (the training "
                "folder's framing, grey-level and sharpness told its classes apart: bench/kermany_shift.py); "
                "stretch, blur and MixUp augmentation; warm-up and cosine schedule fitted to a time budget on every "
                "core; snapshot ensemble and aspect TTA where val prefers them",
        description="Pneumonia vs normal on a frontal paediatric chest radiograph, read at 224x224 pixels.",
        task="binary classification", labels=("normal", "pneumonia"), positive_label="pneumonia",
        network_def=monai_resnet(2, (24, 48, 96, 192)),
        architecture="MONAI ResNet (basic blocks, layers 1-1-1-1, widths 24/48/96/192, 7x7 stride-2 stem and "
                     "max-pool), 0.69 M parameters per network, trained from scratch, 224x224 grey input; up to "
                     "three snapshots of one run averaged (logits) and aspect test-time views, each only where "
                     "val prefers it (see training.kept and tta)",
        data_source="Kermany et al. 2018 paediatric chest X-ray set (Guangzhou Women and Children's Medical "
                    "Center; children aged 1-5; anterior-posterior films) at 224x224: the 5,216 training images "
                    "split by patient into train and val, and the original 624-image test split (234 normal, "
                    "390 pneumonia)",
        data_licence=KERMANY_LICENCE,
        intended_use="Decision support for frontal (PA/AP) chest radiographs of young children: probability of "
                     "pneumonia (bacterial or viral). Not a diagnosis. Adults and lateral views are outside its "
                     "training data.",
        intended_use_rules={"modalities": ["CR", "DX"], "body_parts": ["CHEST", "THORAX", "LUNG"],
                            "excluded_views": ["LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "OBL"],
                            "age_years": [0, 5], "age_note": "paediatric chest radiographs, ages 1-5",
                            "require_body_part": False, "grey_only": True, "min_side_px": 128,
                            "training_px": "224x224 (whole films stretched to square)"},
        limitations="Trained on one hospital's paediatric films; dark margins are cut and the rest of the film "
                    "is stretched to a square as in the training images; not validated on adults, portable ICU films or lateral views; the "
                    "test split differs from training (fewer pneumonia cases, other acquisition period).",
        modality="CR/DX",
        coverage={"findings": ["pneumonia"], "modality": "frontal chest radiograph", "body_part": "chest",
                  "summary": "pneumonia versus normal on a frontal chest radiograph (trained on young children)",
                  "tool_hint": "pneumonia on a child's chest X-ray"},
        threshold_rule="prior-neutral", tta=("hflip",),
        # layer3's Grad-CAM of this network is empty (all negative) on most pneumonia films; layer4's is not
        saliency_layer="layer4",
        # Chest films: never flipped (a mirrored chest has its heart on the right). The training folder's
        # films told the classes apart by their framing, grey levels, sharpness and aspect ratio
        # (bench/kermany_shift.py), so: dark margins cut and histogram equalised (preprocessing), and a wide
        # stretch, blur and MixUp in training; snapshot ensemble and aspect TTA kept only if val says so.
        archive=ArchivePlan(kind="kermany-cxr", size=(224, 224), geometry="stretch", border="crop-dark",
                            intensity="equalise", fit=FitSpec(
            epochs=36, batch_size=32, lr=2e-3, weight_decay=0.05, low_res=128, low_res_share=0.4, ema=0.998,
            warmup_share=0.05, cycles=3, mix="mixup", mix_alpha=0.2, mix_prob=0.5,
            augment=AugmentSpec(rotate_deg=8, scale=0.12, stretch=0.35, translate=0.06, hflip=False, gamma=0.3,
                                contrast=0.15, noise=0.02, padding="border", blur=1.2)),
            tta_candidates=((), ("aspect",))),
        anchors=({"source": "Kermany et al., Cell 2018 (ImageNet-pretrained Inception-v3)",
                  "setting": "same 624 test images", "acc": 0.928, "sensitivity": 0.932, "specificity": 0.901,
                  "auc": 0.968},
                 {"source": "target of issue 14", "setting": "same 624 test images", "acc": 0.94, "auc": 0.985,
                  "sensitivity": 0.90, "specificity": 0.90}),
        references=("Kermany DS, Goldbaum M, Cai W, et al. Identifying medical diagnoses and treatable diseases "
                    "by image-based deep learning. Cell 172(5):1122-1131, 2018.",
                    "Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray "
                    "Images for Classification. Mendeley Data v2, 2018, doi:10.17632/rscbjbr9sj.2 (CC BY 4.0)."),
    ),
    "brain-mri-tumour": Recipe(
        name="brain-mri-tumour", version="2.0.0",
        changes="a longer schedule (warm-up and cosine) fitted to a time budget on every core; MixUp, blur and "
                "coil-shading augmentation; TTA chosen on val",
        description="Tumour type (meningioma, glioma or pituitary tumour) on a contrast-enhanced T1 MR slice of "
                    "the head that shows a tumour, read at 224x224 pixels.",
        task="multi-class classification (3 tumour types; no tumour-free class)",
        labels=("meningioma", "glioma", "pituitary"), positive_label="pituitary",
        network_def=monai_resnet(3, (24, 48, 96, 192)),
        architecture="MONAI ResNet (basic blocks, layers 1-1-1-1, widths 24/48/96/192, 7x7 stride-2 stem and "
                     "max-pool), 0.69 M parameters, trained from scratch, 224x224 grey input; horizontal-flip "
                     "test-time view where val prefers it (see tta)",
        data_source="Cheng 2017 figshare brain tumour data set: 3,064 contrast-enhanced T1-weighted MR slices "
                    "from 233 patients (Nanfang Hospital and General Hospital, Tianjin Medical University), "
                    "708 meningioma, 1,426 glioma, 930 pituitary tumour, 512x512; split by the author's "
                    "patient-grouped cv_fold: folds 1-3 train, fold 4 val, fold 5 test",
        data_licence=CHENG_LICENCE,
        intended_use="Decision support on one contrast-enhanced T1 MR slice of the head that the clinician "
                     "knows shows a tumour: which of three types (meningioma, glioma, pituitary tumour) it looks "
                     "like. It cannot say whether a tumour is present and knows no other lesion types. Not a "
                     "diagnosis.",
        intended_use_rules={"modalities": ["MR"], "body_parts": ["HEAD", "BRAIN", "SKULL", "CEREBR", "CRAN",
                                                                   "PITUITARY", "SELLA"],
                            "excluded_views": [], "age_years": None, "require_body_part": True,
                            "grey_only": True, "min_side_px": 128, "training_px": "512x512 (read at 224x224)",
                            "caution_series_words": ["T2", "FLAIR", "DWI", "ADC", "SWI", "DIFFUSION", "PERFUSION"],
                            "series_note": "contrast-enhanced T1-weighted slices"},
        result_statement="this model only answers which of three tumour types (meningioma, glioma, pituitary "
                         "tumour) a slice that shows a tumour resembles; it was trained without tumour-free "
                         "images, cannot tell whether a tumour is present, and its output never means that a "
                         "tumour was found",
        limitations="No tumour-free class and only three tumour types (no metastasis, lymphoma, abscess ...); "
                    "trained on single slices chosen to show the tumour, from two hospitals in China (2005-2010); "
                    "the type is read from one slice, not the whole series.",
        modality="MR",
        coverage={"findings": ["tumour type"], "modality": "contrast-enhanced T1 MR slice", "body_part": "head",
                  "summary": "the type of a brain tumour (glioma, meningioma or pituitary) on a contrast-enhanced T1 "
                             "MR slice, given that a tumour is present (it cannot tell whether there is one)",
                  "tool_hint": "tumour type (meningioma, glioma, pituitary) on a brain MR slice showing a tumour, "
                               "never whether there is one"},
        threshold_rule="calibrated", tta=("hflip",),
        # Head MR: a left-right flip keeps the anatomy plausible (the tumour may lie on either side), an upside
        # down head does not; coil shading varies, so a smooth intensity field; one long cosine cycle (the
        # 24-epoch model was still improving).
        archive=ArchivePlan(kind="cheng-brain-mri", size=(224, 224), geometry="pad-square", fit=FitSpec(
            epochs=40, batch_size=32, lr=2e-3, weight_decay=0.05, low_res=128, low_res_share=0.5, ema=0.998,
            warmup_share=0.05, mix="mixup", mix_alpha=0.2, mix_prob=0.5,
            augment=AugmentSpec(rotate_deg=15, scale=0.15, stretch=0.1, translate=0.08, hflip=True, gamma=0.3,
                                contrast=0.2, noise=0.02, padding="zeros", blur=0.8, bias_field=0.3)),
            test_fold=5, val_fold=4, tta_candidates=((), ("hflip",))),
        anchors=({"source": "Cheng et al., PLoS ONE 2015 (hand-made features, tumour region given)",
                  "setting": "patient-wise 5-fold CV", "acc": 0.913},
                 {"source": "Deepak and Ameer, Comput Biol Med 2019 (ImageNet-pretrained GoogLeNet)",
                  "setting": "patient-wise 5-fold CV", "acc": 0.98},
                 {"source": "target of issue 14", "setting": "fold 5 and 5-fold mean", "acc": 0.95, "auc": 0.98}),
        references=("Cheng J. brain tumor dataset. figshare, 2017, doi:10.6084/m9.figshare.1512427 (CC BY 4.0).",
                    "Cheng J, Huang W, Cao S, et al. Enhanced performance of brain tumor classification via tumor "
                    "region augmentation and partition. PLoS ONE 10(10):e0140381, 2015.",
                    "Cheng J, Yang W, Huang M, et al. Retrieval of brain tumors by adaptive spatial pooling and "
                    "Fisher vector representation. PLoS ONE 11(6):e0157112, 2016.",
                    "Deepak S, Ameer PM. Brain tumor classification using deep CNN features via transfer "
                    "learning. Computers in Biology and Medicine 111:103345, 2019."),
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
        limitations=("Small training set (546 images) from one centre; 28x28 input; only grey B-mode. It is still "
                     "at 28x28 because no real-resolution breast ultrasound data set with a clear licence is "
                     "available to this project yet (BreastMNIST is the 28-px derivative of Al-Dhabyani et al. "
                     "2020); it will be retrained at full resolution when one is (issue 14)."),
        modality="US",
        coverage={"findings": ["breast malignancy"], "modality": "breast ultrasound", "body_part": "breast",
                  "summary": "malignant versus normal-or-benign on a breast ultrasound image",
                  "tool_hint": "breast ultrasound malignancy"},
        epochs=40, batch_size=32, lr=2e-3, rotate_deg=15.0, scale=0.15, ensemble=3,
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
