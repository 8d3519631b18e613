"""The training loop's parts: the learning-rate schedule, the budget arithmetic, MixUp/CutMix, the
modality-matched augmentation (no flips of chest films), test-time views and the preprocessing steps that
answer the Kermany shift (dark margins, histogram equalisation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tools.classifiers.augment import AugmentSpec, BatchAugment
from tools.classifiers.fitloop import FitSpec, Mixer, StepTimes, epochs_for_budget, lr_factor, with_epochs
from tools.classifiers.preprocess import Preprocessing, dark_border, equalise, scaled
from tools.classifiers.recipes import RECIPES
from tools.classifiers.runtime import tta_views
from tools.errors import BundleError, InputError

from .helpers import tiny_metadata, write_tiny_bundle


def test_warm_up_then_cosine_in_cycles():
    spec = FitSpec(epochs=30, cycles=3, warmup_share=0.1, final_lr_share=0.01)
    lr = np.array([lr_factor(s, 300, spec) for s in range(300)])
    assert lr[0] == pytest.approx(1 / 25) and np.all(np.diff(lr[:30]) > 0)  # warm-up rises
    assert lr[30] == pytest.approx(1.0, abs=0.02) and lr[99] < 0.05  # first cycle decays to near the floor
    assert lr[100] == pytest.approx(1.0) and lr[199] < 0.05 and lr[200] == pytest.approx(1.0)  # restarts
    assert lr.min() >= 0.01 - 1e-9 and lr[-1] == pytest.approx(0.01, abs=0.005)
    single = [lr_factor(s, 100, FitSpec(epochs=10)) for s in range(100)]
    assert max(single) == pytest.approx(1.0, abs=0.01) and np.all(np.diff(single[10:]) <= 1e-12)


def test_epochs_keep_whole_cycles_and_fit_the_budget():
    spec = FitSpec(epochs=30, cycles=3, low_res=128, low_res_share=0.5)
    assert with_epochs(spec, 10).epochs == 9 and with_epochs(spec, 1).cycles == 1 and with_epochs(spec, 1).epochs == 1
    times = StepTimes(per_step_low=0.1, per_step_full=0.3, per_val_image=0.01)
    plan = epochs_for_budget(spec, times, n_train=320, n_val=100, budget_s=600.0)
    per_epoch = 0.5 * 10 * 0.1 + 0.5 * (10 * 0.3 + 100 * 0.01)  # 10 steps of 32 per epoch
    assert plan.epochs == int(600 // per_epoch) // 3 * 3 and plan.estimated_train_seconds <= 600
    assert epochs_for_budget(spec, times, 320, 100, 1.0).epochs == 3  # at least one cycle
    with pytest.raises(InputError, match="no time"):
        epochs_for_budget(spec, times, 320, 100, 0.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs"), ({"epochs": 2, "cycles": 3}, "cycles"), ({"epochs": 5, "mix": "mosaic"}, "mix"),
    ({"epochs": 5, "warmup_share": 0.7}, "warmup_share"), ({"epochs": 5, "low_res_share": 1.0}, "low_res_share"),
])
def test_bad_fit_settings_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        FitSpec(**kwargs)


def test_mixup_and_cutmix_mix_images_and_say_how_much():
    x = torch.stack([torch.zeros(1, 16, 16), torch.ones(1, 16, 16)])
    mixed, perm, lam = Mixer(FitSpec(epochs=1, mix="mixup", mix_prob=1.0, mix_alpha=0.4), np.random.default_rng(3))(x)
    assert perm is not None and 0 < lam < 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    many = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).repeat(1, 1, 16, 16)
    cut, perm, lam = Mixer(FitSpec(epochs=1, mix="cutmix", mix_prob=1.0, mix_alpha=1.0), np.random.default_rng(5))(many)
    moved = [i for i in range(6) if int(perm[i]) != i]
    assert moved and 0 < lam < 1
    for i in moved:  # the label weight is the share of the image that stayed
        assert float((cut[i] != many[i]).float().mean()) == pytest.approx(1 - lam, abs=1e-6)
    same, perm, lam = Mixer(FitSpec(epochs=1), np.random.default_rng(0))(x)
    assert perm is None and lam == 1.0 and same is x


def _lopsided() -> torch.Tensor:
    """A 'film' whose bright mass is on the image's right side (as the heart sits on a chest film's right)."""
    img = torch.zeros(8, 1, 64, 64)
    img[..., 16:48, 36:56] = 1.0
    return img


def test_chest_recipe_never_mirrors_and_brain_recipe_may():
    chest = RECIPES["pneumonia-cxr"].archive.fit
    brain = RECIPES["brain-mri-tumour"].archive.fit
    assert not chest.augment.hflip and "hflip" not in chest.tta
    assert all("hflip" not in c for c in RECIPES["pneumonia-cxr"].archive.tta_candidates)
    assert brain.augment.hflip
    columns = torch.arange(64, dtype=torch.float32)
    for spec, mirrored in ((chest.augment, False), (brain.augment, True)):
        out = BatchAugment(spec, seed=0)(_lopsided().repeat(8, 1, 1, 1))
        centre = (out.sum(dim=(1, 2)) * columns).sum(-1) / out.sum(dim=(1, 2, 3))  # mass centre, per image
        assert bool((centre < 32).any()) is mirrored, spec


def test_augmentation_is_reproducible_and_stays_in_range():
    spec = AugmentSpec(stretch=0.25, blur=1.2, bias_field=0.3)
    x = torch.rand(6, 1, 48, 48)
    a, b = BatchAugment(spec, 7)(x), BatchAugment(spec, 7)(x)
    assert torch.equal(a, b) and a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    flat = AugmentSpec(rotate_deg=0, scale=0, stretch=0, translate=0, gamma=0, contrast=0, noise=0, blur=1.5)
    constant = torch.full((4, 1, 32, 32), 0.5)
    assert torch.allclose(BatchAugment(flat, 1)(constant), constant, atol=1e-6)  # blur keeps a flat image


def test_aspect_views_squeeze_and_widen_the_content():
    x = torch.zeros(1, 1, 20, 100)
    x[..., 40:60] = 1.0
    identity, narrow, wide = tta_views(x, ["aspect"])
    assert identity is x and narrow.shape == wide.shape == x.shape
    assert float(narrow.sum()) < float(x.sum()) < float(wide.sum())


def test_dark_margins_are_cut_and_the_region_maps_back():
    rng = np.random.default_rng(0)
    film = np.zeros((200, 300), np.float32)
    film[10:190, 40:260] = 0.3 + 0.6 * rng.random((180, 220), dtype=np.float32)
    assert dark_border(film) == (10, 10, 40, 40)
    spec = Preprocessing(size=(64, 64), geometry="stretch", intensity="percentiles", border="crop-dark")
    out, box = scaled(film, spec)
    assert (box.top, box.left, box.region, box.height, box.width) == (10, 40, (180, 220), 200, 300)
    inner, _ = scaled(film[10:190, 40:260], Preprocessing(size=(64, 64), geometry="stretch", intensity="percentiles"))
    np.testing.assert_allclose(out, inner, atol=1e-6)  # the margins made no difference
    dark = np.zeros((100, 100), np.float32)
    dark[:, :2] = 1.0  # almost all dark: at most a fifth of each side goes
    top, bottom, left, right = dark_border(dark + 0.001 * rng.random((100, 100), dtype=np.float32))
    assert max(top, bottom, left, right) <= 20


def test_equalisation_ignores_any_increasing_grey_curve():
    rng = np.random.default_rng(1)
    film = rng.random((64, 64)).astype(np.float32)
    spec = Preprocessing(size=(64, 64), geometry="stretch", intensity="equalise")  # at the model's size
    a, _ = scaled(film, spec)
    b, _ = scaled(film ** 2.2, spec)  # another exposure / post-processing curve
    np.testing.assert_allclose(a, b, atol=1e-6)
    eq = equalise(np.array([[0.0, 0.0], [0.5, 1.0]], np.float32))
    np.testing.assert_allclose(eq, [[0.25, 0.25], [0.625, 0.875]])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("preprocessing", {"size": [28, 28], "mean": 0.5, "std": 0.25, "border": "trim"}, "border"),
    ("preprocessing", {"size": [28, 28], "mean": 0.5, "std": 0.25, "intensity": "clahe"}, "intensity"),
    ("tta", ["vflip"], "test-time views"),
])
def test_a_user_bundle_naming_unknown_steps_is_a_bundle_error(tmp_path, field, value, message):
    from tools.classifiers.bundle import Bundle

    meta = tiny_metadata("odd")
    meta[field] = value
    write_tiny_bundle(tmp_path, "odd", metadata=meta)
    with pytest.raises(BundleError, match=message):
        Bundle.read(tmp_path / "odd")
