"""Settings precedence, validation and secret handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from downloader.config import Secret, load_settings
from downloader.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_source() -> None:
    settings = load_settings(env={}, config_path=None)
    assert settings.concurrency == 8
    assert settings.base_url == "https://us-east-1.recall.ai"
    assert settings.api_key is None


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml", "concurrency = 3\nlist_rate_limit = 30\nregion = 'eu-central-1'\n"
    )
    env = {"RECALL_DL_CONCURRENCY": "5"}
    settings = load_settings(env=env, config_path=config, flags={"concurrency": "7"})
    assert settings.concurrency == 7  # flag beats env
    settings = load_settings(env=env, config_path=config)
    assert settings.concurrency == 5  # env beats file
    assert settings.list_rate_limit == 30  # file beats default
    assert settings.base_url == "https://eu-central-1.recall.ai"


def test_recall_variable_names_are_honoured() -> None:
    env = {
        "RECALL_API_KEY": "k-123",
        "RECALL_API_URL": "http://127.0.0.1:9",
        "RECALL_REGION": "us-west-2",
    }
    settings = load_settings(env=env)
    assert settings.require_api_key().reveal() == "k-123"
    assert settings.base_url == "http://127.0.0.1:9"
    assert settings.region == "us-west-2"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "concurency = 3\n")
    with pytest.raises(ConfigError, match="concurency"):
        load_settings(env={}, config_path=config)


def test_bad_value_names_setting_and_source() -> None:
    with pytest.raises(ConfigError, match=r"concurrency.*RECALL_DL_CONCURRENCY"):
        load_settings(env={"RECALL_DL_CONCURRENCY": "many"})
    with pytest.raises(ConfigError, match="at least 1"):
        load_settings(env={"RECALL_DL_CONCURRENCY": "0"})
    with pytest.raises(ConfigError, match="region"):
        load_settings(env={"RECALL_REGION": "mars-1"})


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={}, config_path=write(tmp_path / "c.toml", "x = = 1"))


def test_size_suffixes() -> None:
    settings = load_settings(env={"RECALL_DL_CHECKPOINT_BYTES": "8M"})
    assert settings.checkpoint_bytes == 8 << 20


def test_api_key_file_must_be_private(tmp_path: Path) -> None:
    key = write(tmp_path / "key", "secret-from-file\n")
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(env={"RECALL_DL_API_KEY_FILE": str(key)})
    os.chmod(key, 0o600)
    settings = load_settings(env={"RECALL_DL_API_KEY_FILE": str(key)})
    assert settings.require_api_key().reveal() == "secret-from-file"


def test_systemd_credentials_directory(tmp_path: Path) -> None:
    write(tmp_path / "recall_api_key", "cred-key")
    settings = load_settings(env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.require_api_key().reveal() == "cred-key"


def test_missing_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="RECALL_API_KEY"):
        load_settings(env={}).require_api_key()


def test_secret_never_shows_itself() -> None:
    secret = Secret("hunter2-key")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    settings = load_settings(env={"RECALL_API_KEY": "hunter2-key"})
    assert "hunter2" not in repr(settings)
