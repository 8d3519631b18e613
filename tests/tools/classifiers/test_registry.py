from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.classifiers.bundle import Bundle
from tools.classifiers.config import ClassifierConfig
from tools.classifiers.registry import get_bundle, list_models
from tools.errors import BundleError, ModelUnavailableError, UnknownNameError

from .helpers import TINY_NET, tiny_metadata, write_tiny_bundle


@pytest.fixture
def user_config(tmp_path) -> ClassifierConfig:
    write_tiny_bundle(tmp_path / "bundles", "tiny-cxr")
    return ClassifierConfig(model_dirs=(tmp_path / "bundles",))


def test_registry_lists_bundled_and_user_bundles(user_config):
    names = [b.name for b in list_models(user_config)]
    assert "tiny-cxr" in names
    assert {"pneumonia-cxr", "brain-mri-tumour", "breast-us"} <= set(names)
    assert [b.name for b in list_models()] == ["brain-mri-tumour", "breast-us", "pneumonia-cxr"]
    bundle = get_bundle("tiny-cxr", user_config)
    assert bundle.labels == ["normal", "abnormal"] and bundle.temperature == 1.5
    net = bundle.load_network()
    assert not net.training


def test_a_single_bundle_directory_can_be_named(tmp_path):
    path = write_tiny_bundle(tmp_path, "solo")
    assert get_bundle("solo", ClassifierConfig(model_dirs=(path,))).path == path


def test_unknown_name_suggests_near_names(user_config):
    with pytest.raises(UnknownNameError, match="tiny-cxr") as err:
        get_bundle("tiny-cx", user_config)
    assert "did you mean" in str(err.value)
    with pytest.raises(UnknownNameError, match="pneumonia-cxr"):
        get_bundle("pneumonia", user_config)


def test_labels_disagreeing_with_network_is_bundle_error(tmp_path):
    meta = tiny_metadata("three", labels=["a", "b", "c"])
    path = write_tiny_bundle(tmp_path, "three", metadata=meta)  # network has 2 outputs
    with pytest.raises(BundleError, match="3 labels"):
        Bundle.read(path).build_network()
    # the registry skips it in listings but explains when asked by name
    with pytest.raises(BundleError):
        get_bundle("three", ClassifierConfig(model_dirs=(tmp_path,))).load_network()


def test_input_channels_disagreeing_with_network_is_bundle_error(tmp_path):
    path = write_tiny_bundle(tmp_path, "rgb", metadata=tiny_metadata("rgb", channels=3))
    with pytest.raises(BundleError, match="3 channel"):
        Bundle.read(path).load_network()


def test_declared_output_channels_checked_against_labels(tmp_path):
    meta = tiny_metadata("decl")
    meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 5
    path = write_tiny_bundle(tmp_path, "decl", metadata=meta)
    with pytest.raises(BundleError, match="5 output channels"):
        Bundle.read(path)


def test_missing_weights_is_model_unavailable(tmp_path):
    path = write_tiny_bundle(tmp_path, "noweights", weights=False)
    with pytest.raises(ModelUnavailableError, match="model.pt"):
        Bundle.read(path).load_network()


def test_weights_for_another_network_is_bundle_error(tmp_path):
    path = write_tiny_bundle(tmp_path, "wrong")
    other = dict(TINY_NET, block_inplanes=[8, 8, 8, 8])
    (path / "configs" / "network.json").write_text(json.dumps({"network_def": other}))
    with pytest.raises(BundleError, match="do not match"):
        Bundle.read(path).load_network()


@pytest.mark.parametrize("breakage, message", [
    (lambda p: (p / "configs" / "metadata.json").write_text("{not json"), "not valid JSON"),
    (lambda p: (p / "configs" / "network.json").write_text('{"network_def": {"x": 1}}'), "_target_"),
    (lambda p: (p / "configs" / "network.json").write_text(
        '{"network_def": {"_target_": "monai.networks.nets.NoSuchNet"}}'), "does not instantiate"),
    (lambda p: (p / "configs" / "metadata.json").unlink(), "not a MONAI bundle"),
])
def test_malformed_bundles(tmp_path: Path, breakage, message):
    path = write_tiny_bundle(tmp_path, "broken")
    breakage(path)
    with pytest.raises(BundleError, match=message):
        Bundle.read(path).build_network()


def test_bundled_weights_are_small_and_cards_complete():
    for bundle in list_models(None):
        assert bundle.weights_path.stat().st_size < 5 * 1024 * 1024
        card = bundle.card()
        assert card["training_data"] and card["intended_use"] and "CC BY 4.0" in card["data_licence"]
        test = card["metrics"]["test"]
        assert {"auc", "acc", "ece", "brier", "n"} <= set(test)
        assert bundle.ood is not None and bundle.ood.threshold > 0
        readme = (bundle.path / "docs" / "README.md").read_text()
        assert f"# {bundle.name} {bundle.version}" in readme and "radconsult models train" in readme
    real = {b.name: b for b in list_models(None) if b.preprocess_spec.size[0] >= 224}
    assert set(real) == {"pneumonia-cxr", "brain-mri-tumour"}
    assert real["brain-mri-tumour"].statement and "tumour is present" in real["brain-mri-tumour"].statement
    assert "per_class_recall" in real["brain-mri-tumour"].metadata["metrics"]["test"]
    assert "28x28" in get_bundle("breast-us").metadata["limitations"]  # says why it is still at 28 px
    from tools.classifiers.recipes import get_recipe

    for name, bundle in real.items():  # a bundle of the current recipe: every test read listed, no mirrored chests
        if bundle.version == get_recipe(name).version:
            assert bundle.metadata["test_reads"] and bundle.metadata["training"]["threads"] >= 1
            assert name != "pneumonia-cxr" or "hflip" not in bundle.tta


def test_fp16_weights_load_into_a_float32_network(tmp_path):
    import torch

    from tools.classifiers.bundle import write_bundle

    path = write_tiny_bundle(tmp_path, "half")
    state = torch.load(path / "models" / "model.pt", weights_only=True)
    write_bundle(path, tiny_metadata("half"), TINY_NET, state, weights_dtype=torch.float16)
    stored = torch.load(path / "models" / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    net = Bundle.read(path).load_network()
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_network_def_references_resolve_like_monai(tmp_path):
    """A zoo-style config: network_def refers to other keys of the same file with @name."""
    path = write_tiny_bundle(tmp_path, "refs")
    net = dict(TINY_NET, num_classes="@num_classes", block_inplanes="@widths")
    (path / "configs" / "network.json").write_text(json.dumps(
        {"num_classes": 2, "widths": [4, 8, 8, 8], "network_def": net}))
    assert Bundle.read(path).load_network() is not None
