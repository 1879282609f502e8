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


@pytest.mark.parametrize("bad", ["sek\nrit", "sek rit", "sek\x00rit", "   "])
def test_a_key_that_cannot_go_in_a_header_is_refused_up_front(bad: str, tmp_path: Path) -> None:
    """A key pasted with a line break used to fail every request, job by job, later."""
    with pytest.raises(ConfigError, match=r"RECALL_API_KEY|api_key") as info:
        load_settings(env={"RECALL_API_KEY": bad})
    assert "sek" not in str(info.value)  # the message never shows the secret
    key = tmp_path / "key"
    key.write_text(bad + "\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match=r"empty|line breaks") as info:
        load_settings(env={"RECALL_DL_API_KEY_FILE": str(key)})
    assert "sek" not in str(info.value)


def test_secret_never_shows_itself() -> None:
    secret = Secret("hunter2-key")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    settings = load_settings(env={"RECALL_API_KEY": "hunter2-key"})
    assert "hunter2" not in repr(settings)


# ---- the key and its file are one setting: the highest layer wins, whole ------------------


def private(path: Path, text: str) -> Path:
    write(path, text)
    os.chmod(path, 0o600)
    return path


def test_key_file_flag_beats_key_in_environment(tmp_path: Path) -> None:
    good = private(tmp_path / "good.txt", "good-key")
    settings = load_settings(env={"RECALL_API_KEY": "wrong-key"}, flags={"api_key_file": str(good)})
    assert settings.require_api_key().reveal() == "good-key"
    assert settings.api_key_file == good


def test_key_file_in_environment_beats_key_in_file(tmp_path: Path) -> None:
    good = private(tmp_path / "good.txt", "good-key")
    config = write(tmp_path / "c.toml", 'api_key = "wrong-key"\n')
    settings = load_settings(env={"RECALL_DL_API_KEY_FILE": str(good)}, config_path=config)
    assert settings.require_api_key().reveal() == "good-key"


def test_key_in_environment_beats_key_file_in_file(tmp_path: Path) -> None:
    # The lower layer's file is not even read: a missing one is no error.
    config = write(tmp_path / "c.toml", f'api_key_file = "{tmp_path / "absent"}"\n')
    settings = load_settings(env={"RECALL_API_KEY": "env-key"}, config_path=config)
    assert settings.require_api_key().reveal() == "env-key"
    assert settings.api_key_file is None


def test_key_and_key_file_in_one_layer_is_an_error(tmp_path: Path) -> None:
    good = private(tmp_path / "good.txt", "good-key")
    with pytest.raises(ConfigError, match=r"both api_key .*RECALL_API_KEY.*api_key_file") as info:
        load_settings(env={"RECALL_API_KEY": "env-key", "RECALL_DL_API_KEY_FILE": str(good)})
    assert "env-key" not in str(info.value)
    config = write(tmp_path / "c.toml", f'api_key = "toml-key"\napi_key_file = "{good}"\n')
    with pytest.raises(ConfigError, match=r"both api_key .*config file"):
        load_settings(env={}, config_path=config)
    # A higher layer settles it: the conflicting lower layer is not consulted.
    settings = load_settings(env={"RECALL_API_KEY": "env-key"}, config_path=config)
    assert settings.require_api_key().reveal() == "env-key"


def test_webhook_secret_and_its_file_follow_the_same_rule(tmp_path: Path) -> None:
    good = private(tmp_path / "wh.txt", "whsec_good")
    settings = load_settings(
        env={"RECALL_WEBHOOK_SECRET": "whsec_wrong"}, flags={"webhook_secret_file": str(good)}
    )
    assert settings.webhook_secret == Secret("whsec_good")
    config = write(tmp_path / "c.toml", 'webhook_secret = "whsec_wrong"\n')
    settings = load_settings(env={"RECALL_DL_WEBHOOK_SECRET_FILE": str(good)}, config_path=config)
    assert settings.webhook_secret == Secret("whsec_good")
    with pytest.raises(ConfigError, match="both webhook_secret"):
        load_settings(
            env={"RECALL_WEBHOOK_SECRET": "whsec_x", "RECALL_DL_WEBHOOK_SECRET_FILE": str(good)}
        )


def test_credentials_directory_is_used_only_when_no_layer_names_the_key(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    write(creds / "recall_api_key", "cred-key")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert load_settings(env=env).require_api_key().reveal() == "cred-key"
    config = write(tmp_path / "c.toml", 'api_key = "toml-key"\n')
    assert load_settings(env=env, config_path=config).require_api_key().reveal() == "toml-key"
    good = private(tmp_path / "good.txt", "file-key")
    settings = load_settings(env={**env, "RECALL_DL_API_KEY_FILE": str(good)})
    assert settings.require_api_key().reveal() == "file-key"


# ---- unreadable secrets are config errors, not tracebacks ---------------------------------


def test_unreadable_credential_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recall_api_key").mkdir()  # an OSError on read, even for root
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"credential .*recall_api_key"):
        load_settings(env=env)
    (tmp_path / "recall_api_key").rmdir()
    write(tmp_path / "recall_api_key", "cred-key")

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError, match=r"recall_api_key.*not readable"):
        load_settings(env=env)


def test_unreadable_key_file_is_a_config_error(tmp_path: Path) -> None:
    directory = tmp_path / "key-dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=r"api_key_file .*key-dir.*--api-key-file"):
        load_settings(env={}, flags={"api_key_file": str(directory)})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00key")
    os.chmod(binary, 0o600)
    with pytest.raises(ConfigError, match="api_key_file"):
        load_settings(env={"RECALL_DL_API_KEY_FILE": str(binary)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"RECALL_DL_WEBHOOK_SECRET_FILE": str(tmp_path / "absent")})


# ---- unknown RECALL_DL_* variables ---------------------------------------------------------


def test_unknown_environment_setting_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"RECALL_DL_CONCURENCY": "3"})
    message = str(info.value)
    assert "RECALL_DL_CONCURENCY" in message
    assert "environment" in message
    assert "did you mean RECALL_DL_CONCURRENCY?" in message


def test_recall_names_under_the_dl_prefix_point_at_the_real_name() -> None:
    with pytest.raises(ConfigError, match=r"RECALL_DL_API_KEY; .*RECALL_API_KEY"):
        load_settings(env={"RECALL_DL_API_KEY": "k"})


def test_non_setting_variables_the_project_uses_are_accepted() -> None:
    env = {
        "RECALL_DL_BENCH_STATS": "/tmp/stats.json",
        "RECALL_DL_BENCH_PROFILE": "",
        "RECALL_DL_UNUSED": "",  # empty means unset, like for known settings
        "RECALL_SOMETHING_ELSE": "x",  # not ours to judge
        "RECALL_DL_CONCURRENCY": "3",
    }
    assert load_settings(env=env).concurrency == 3


def test_every_setting_has_an_accepted_environment_name() -> None:
    from downloader.config import FIELD_NAMES, env_name

    env = {env_name(name): "" for name in FIELD_NAMES}
    assert load_settings(env=env) == load_settings(env={})


@pytest.mark.parametrize(
    "given",
    ["http://127.0.0.1:8000", "http://127.0.0.1:8000/", "http://127.0.0.1:8000/api/v1/"],
)
def test_api_url_is_the_origin_with_or_without_the_documented_prefix(given: str) -> None:
    settings = load_settings(env={"RECALL_API_URL": given})
    assert settings.base_url == "http://127.0.0.1:8000"


def test_api_url_with_another_path_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="origin only"):
        load_settings(env={"RECALL_API_URL": "https://us-east-1.recall.ai/v2"})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_seconds_must_be_finite(value: str) -> None:
    with pytest.raises(ConfigError, match=r"lease_seconds.*finite"):
        load_settings(env={"RECALL_DL_LEASE_SECONDS": value})


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:", "8787"])
def test_http_listen_needs_a_real_port(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"http_listen.*up to 65535"):
        load_settings(env={"RECALL_DL_HTTP_LISTEN": listen})
