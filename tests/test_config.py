"""config.json, environment and CLI flags resolve into Settings the way users expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiclient.cli import build_parser
from aiclient.config import KEYS, Settings, load_settings
from aiclient.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

ORIGINAL_FLAGS = (
    "--api-key",
    "--log-prompts",
    "--port",
    "--model-provider",
    "--openai-api-key",
    "--openai-base-url",
    "--claude-api-key",
    "--claude-base-url",
    "--gemini-oauth-creds-base64",
    "--gemini-oauth-creds-file",
    "--project-id",
    "--system-prompt-file",
    "--system-prompt-mode",
    "--host",
    "--prompt-log-base-name",
    "--kiro-oauth-creds-base64",
    "--kiro-oauth-creds-file",
    "--qwen-oauth-creds-file",
    "--cron-near-minutes",
    "--cron-refresh-token",
    "--provider-pools-file",
)


def write_config(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def test_defaults_without_config_file() -> None:
    """With no config.json the documented defaults apply."""
    settings = load_settings(env={})
    assert settings.port == 3000
    assert settings.required_api_key == "123456"
    assert settings.request_max_retries == 3
    assert settings.request_base_delay_ms == 1000
    assert settings.max_error_count == 3
    assert settings.config_file is None


def test_partial_config_keeps_defaults_for_missing_keys(tmp_path: Path) -> None:
    """A config.json that lacks keys still gets the defaults (the original loses them)."""
    path = write_config(tmp_path, {"SERVER_PORT": 4000})
    settings = load_settings(str(path), env={})
    assert settings.port == 4000
    assert settings.request_max_retries == 3
    assert settings.required_api_key == "123456"
    assert settings.config_file == str(path)


def test_default_config_path_is_read_from_cwd(tmp_path: Path) -> None:
    """./config.json is read without --config."""
    write_config(tmp_path, {"REQUIRED_API_KEY": "from-file"})
    assert load_settings(env={}).required_api_key == "from-file"


def test_precedence_defaults_config_env_cli(tmp_path: Path) -> None:
    """defaults < config.json < environment < CLI, key by key."""
    path = write_config(
        tmp_path,
        {
            "SERVER_PORT": 4000,
            "REQUEST_MAX_RETRIES": 5,
            "MAX_ERROR_COUNT": 7,
            "HOST": "0.0.0.0",
        },
    )
    env = {"SERVER_PORT": "4001", "AICLIENT_REQUEST_MAX_RETRIES": "6"}
    settings = load_settings(str(path), env=env, overrides={"SERVER_PORT": "4002"})
    assert settings.port == 4002
    assert settings.request_max_retries == 6
    assert settings.max_error_count == 7
    assert settings.host == "0.0.0.0"


def test_credentials_are_not_taken_from_plain_environment() -> None:
    """A developer's OPENAI_API_KEY in the shell does not silently become a credential,
    but AICLIENT_OPENAI_API_KEY does."""
    assert load_settings(env={"OPENAI_API_KEY": "sk-shell"}).openai_api_key is None
    settings = load_settings(env={"AICLIENT_OPENAI_API_KEY": "sk-mine"})
    assert settings.openai_api_key == "sk-mine"


def test_pools_file_from_environment() -> None:
    settings = load_settings(env={"PROVIDER_POOLS_FILE_PATH": "/x/pools.json"})
    assert settings.pools_file == "/x/pools.json"


def test_model_provider_csv_and_list(tmp_path: Path) -> None:
    """MODEL_PROVIDER accepts a CSV string or a list; unknown entries are dropped."""
    settings = load_settings(
        env={}, overrides={"MODEL_PROVIDER": "Claude-Custom, bogus,openai-custom"}
    )
    assert settings.model_providers == ("claude-custom", "openai-custom")
    assert settings.model_provider == "claude-custom"
    path = write_config(tmp_path, {"MODEL_PROVIDER": ["openai-custom", "openai-custom"]})
    assert load_settings(str(path), env={}).model_providers == ("openai-custom",)


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "SERVER_PORT": 3000,\n  "HOST": oops\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    assert str(path) in info.value.message
    assert "line 3 column 11" in info.value.message


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"SERVER_PORT": "three thousand"})
    with pytest.raises(ConfigError, match="SERVER_PORT: expected an integer"):
        load_settings(str(path), env={})


def test_non_object_config_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, [1, 2])
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        load_settings(str(path), env={})


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(str(tmp_path / "nope.json"), env={})


def test_bad_port_and_mode_are_rejected() -> None:
    with pytest.raises(ConfigError, match="not a TCP port"):
        load_settings(env={}, overrides={"SERVER_PORT": "70000"})
    with pytest.raises(ConfigError, match="SYSTEM_PROMPT_MODE"):
        load_settings(env={}, overrides={"SYSTEM_PROMPT_MODE": "prepend"})


def test_log_prompts_none_is_accepted() -> None:
    """`--log-prompts none` works (the original refused it)."""
    assert load_settings(env={}, overrides={"PROMPT_LOG_MODE": "none"}).prompt_log_mode == (
        "none"
    )


def test_every_original_flag_and_the_extras_exist() -> None:
    """All 21 flags of AIClient-2-API plus the retry/error/config flags are accepted."""
    flags = {key.flag for key in KEYS if key.flag}
    assert set(ORIGINAL_FLAGS) <= flags
    assert {"--request-max-retries", "--request-base-delay", "--max-error-count"} <= flags
    parser = build_parser()
    args = parser.parse_args(["--port=4100", "--api-key", "k", "--config", "c.json"])
    assert (args.port, args.required_api_key, args.config) == ("4100", "k", "c.json")


def test_config_example_loads_through_the_real_loader() -> None:
    """config.json.example stays valid."""
    settings = load_settings(str(REPO / "config.json.example"), env={})
    assert isinstance(settings, Settings)
    assert settings.pools_file == "provider_pools.json"
