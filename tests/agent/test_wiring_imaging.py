"""agent.wiring builds the image loader's and the de-identifier's own configs from the settings."""

from __future__ import annotations

from agent.settings import Settings
from agent.wiring import deid_policy, imaging_config, imaging_limits
from tools.deid import DeidPolicy
from tools.imaging import ImagingLimits


def test_imaging_limits_follow_the_environment(settings, monkeypatch):
    monkeypatch.setenv("RADCONSULT_MAX_DECODE_BYTES", "123456789")
    monkeypatch.setenv("RADCONSULT_MAX_FRAMES", "77")
    limits = imaging_limits(Settings(data_dir=settings.data_dir))
    assert limits == ImagingLimits(max_file_bytes=512 * 2**20, max_pixels=512 * 2**20, max_frames=77,
                                   max_decode_bytes=123456789)


def test_tool_defaults_match_the_settings_defaults(settings):
    assert imaging_limits(settings) == ImagingLimits()  # tools used without the agent get the same limits
    assert deid_policy(settings) == DeidPolicy(secret_path=settings.secret_path)


def test_deid_policy_and_imaging_config(settings):
    shifted = settings.model_copy(update={"deid_dates": "shift", "deid_max_shift_days": 30})
    policy = deid_policy(shifted)
    assert (policy.dates, policy.max_shift_days, policy.secret_path) == ("shift", 30, settings.secret_path)
    config = imaging_config(shifted)
    assert config.deid == policy and config.limits == imaging_limits(shifted)
