"""Settings: every one from its DIGITAE_* variable, with its default, and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings


def test_settings_come_from_digitae_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIGITAE_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("DIGITAE_PORT", "9001")
    monkeypatch.setenv("DIGITAE_API_KEYS", "first-key-123, second-key-456")
    monkeypatch.setenv("DIGITAE_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.setenv("DIGITAE_MICROBATCH_ENABLED", "false")
    monkeypatch.setenv("DIGITAE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("DIGITAE_ADMIN_KEY", "the-admin-key-0123")
    settings = Settings()
    assert settings.models_dir == tmp_path and settings.port == 9001
    assert [key.get_secret_value() for key in settings.api_keys] == ["first-key-123", "second-key-456"]
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == "the-admin-key-0123"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.microbatch_enabled is False and settings.log_level == "warning"
    shown = settings.public()
    assert "first-key-123" not in str(shown) and len(shown["api_keys"]) == 2
    for text in (str(shown), str(settings), repr(settings)):  # the keys are never written, whatever prints them
        assert "first-key-123" not in text and "the-admin-key-0123" not in text


def test_settings_defaults_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.host, defaults.port, defaults.workers, defaults.torch_threads) == ("127.0.0.1", 8000, "auto", 1)
    assert defaults.max_upload_bytes == 5 * 1024 * 1024 and defaults.max_batch == 64
    assert defaults.api_keys == [] and defaults.skip_bad_checkpoints is False
    assert defaults.max_request_bytes > defaults.max_upload_bytes * 4 / 3
    for name, value in [("PORT", "70000"), ("DEVICE", "tpu"), ("API_KEYS", "short"), ("WORKERS", "0")]:
        monkeypatch.setenv(f"DIGITAE_{name}", value)
        with pytest.raises(ValueError):
            Settings()
        monkeypatch.delenv(f"DIGITAE_{name}")


def test_decode_concurrency_follows_the_cpus_the_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: the node's cores (os.cpu_count), not a container's CPU limit: a 2-CPU pod on a 64-core node decoded 64
    images at once, each up to ~13 bytes a pixel."""
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("service.settings.usable_cpus", lambda: 2)  # what cgroup cpu.max "200000 100000" gives
    assert Settings().decode_concurrency == 2
    monkeypatch.setenv("DIGITAE_DECODE_CONCURRENCY", "3")
    assert Settings().decode_concurrency == 3


def test_forwarded_allow_ips_and_require_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().forwarded_allow_ips == [] and Settings().require_keys is False
    monkeypatch.setenv("DIGITAE_FORWARDED_ALLOW_IPS", "10.0.0.0/8, 192.168.1.7")
    assert Settings().forwarded_allow_ips == ["10.0.0.0/8", "192.168.1.7"]
    monkeypatch.setenv("DIGITAE_REQUIRE_KEYS", "true")
    with pytest.raises(ValueError, match="require_keys is set but no API key is"):
        Settings()
    monkeypatch.setenv("DIGITAE_API_KEYS", "a-deployment-key")
    assert [key.get_secret_value() for key in Settings().api_keys] == ["a-deployment-key"]
