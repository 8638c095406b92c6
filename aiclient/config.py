"""Settings: one frozen value resolved once from defaults < config.json < env < CLI.

Owns the table of AIClient-2-API's config.json keys (plus ours) and their parsing. Never
reads the pool file (pool/store.py does) and holds no global state: `load_settings` takes
the environment as a parameter.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .policy import ErrorPolicy, parse_error_policy

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "KEYS",
    "PROVIDER_TYPES",
    "STRATEGIES",
    "Key",
    "PoolStrategy",
    "Settings",
    "load_settings",
    "normalise_model_provider",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = "config.json"

# The provider types of AIClient-2-API's pool format, plus gemini-custom (Gemini by key).
PROVIDER_TYPES: tuple[str, ...] = (
    "gemini-cli-oauth",
    "openai-custom",
    "claude-custom",
    "claude-kiro-oauth",
    "openai-qwen-oauth",
    "gemini-custom",
)


def _as_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")


def _as_opt_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    text = _as_str(key, value)
    return text or None


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str):
        try:
            result = int(value.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    else:
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__}")
    if result < 0:
        raise ConfigError(f"{key}: must not be negative, got {result}")
    return result


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _as_port(key: str, value: Any) -> int:
    port = _as_int(key, value)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: {port} is not a TCP port (0-65535)")
    return port


def _one_of(*choices: str) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        text = _as_str(key, value).strip().lower()
        if text == "override":  # the original README's spelling of overwrite
            text = "overwrite"
        if text not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def normalise_model_provider(value: Any) -> tuple[str, ...]:
    """A string, CSV string or list of provider types, deduplicated, in order.

    Unknown entries are dropped with a warning, as the original does.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(f"MODEL_PROVIDER: expected a string or a list, got {value!r}")
    result: list[str] = []
    for item in items:
        name = _as_str("MODEL_PROVIDER", item).strip().lower()
        if not name:
            continue
        if name not in PROVIDER_TYPES:
            logger.warning("MODEL_PROVIDER: unknown provider type %r ignored", name)
            continue
        if name not in result:
            result.append(name)
    return tuple(result)


STRATEGIES = ("round_robin", "weighted", "least_connections", "random", "lru", "adaptive")


def _json_value(key: str, value: Any) -> Any:
    """An object-valued key may come from the environment as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}: invalid JSON: {exc.msg}") from None
    return value


def _as_type_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in PROVIDER_TYPES:
        raise ConfigError(
            f"{key}: {value!r} is not a provider type ({', '.join(PROVIDER_TYPES)})"
        )
    return value


def parse_fallback_chain(key: str, value: Any) -> dict[str, tuple[str, ...]]:
    """providerFallbackChain: {"openai-custom": ["claude-custom", ...]}."""
    value = _json_value(key, value)
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object keyed by provider type")
    result: dict[str, tuple[str, ...]] = {}
    for ptype, chain in value.items():
        _as_type_name(key, ptype)
        if isinstance(chain, str):
            chain = [chain]
        if not isinstance(chain, list):
            raise ConfigError(f"{key}.{ptype}: expected a list of provider types")
        result[ptype] = tuple(
            _as_type_name(f"{key}.{ptype}", t) for t in chain if t != ptype
        )
    return result


def parse_model_fallbacks(key: str, value: Any) -> dict[str, tuple[str, str]]:
    """modelFallbackMapping: {"gpt-4o": {"targetProviderType": t, "targetModel": m}}."""
    value = _json_value(key, value)
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object keyed by model name")
    result: dict[str, tuple[str, str]] = {}
    for model, target in value.items():
        if not isinstance(target, dict):
            raise ConfigError(f"{key}.{model}: expected an object")
        ptype = _as_type_name(
            f"{key}.{model}.targetProviderType", target.get("targetProviderType")
        )
        target_model = target.get("targetModel", model)
        if not isinstance(target_model, str) or not target_model:
            raise ConfigError(f"{key}.{model}.targetModel: expected a model name")
        result[model] = (ptype, target_model)
    return result


@dataclass(frozen=True, slots=True)
class PoolStrategy:
    """How one provider type picks its instances (config.json `poolStrategies`)."""

    strategy: str = "round_robin"
    weights: Mapping[str, float] | None = None


def parse_strategy(key: str, value: Any) -> PoolStrategy:
    if isinstance(value, str):
        value = {"strategy": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object with strategy and weights")
    name = value.get("strategy", "round_robin")
    if name not in STRATEGIES:
        raise ConfigError(
            f"{key}.strategy: expected one of {', '.join(STRATEGIES)}, got {name!r}"
        )
    raw = value.get("weights")
    weights: dict[str, float] | None = None
    if raw is not None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{key}.weights: expected an object keyed by uuid")
        weights = {}
        for uid, weight in raw.items():
            if (
                not isinstance(weight, int | float)
                or isinstance(weight, bool)
                or weight < 0
            ):
                raise ConfigError(f"{key}.weights.{uid}: expected a number >= 0")
            weights[uid] = float(weight)
    return PoolStrategy(name, weights)


def parse_strategies(key: str, value: Any) -> dict[str, PoolStrategy]:
    """poolStrategies: {"openai-custom": {"strategy": "weighted", "weights": {...}}}."""
    value = _json_value(key, value)
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object keyed by provider type")
    return {
        _as_type_name(key, ptype): parse_strategy(f"{key}.{ptype}", spec)
        for ptype, spec in value.items()
    }


@dataclass(frozen=True, slots=True)
class Key:
    """One config.json key: its Settings attribute, parser, CLI flag and env rule."""

    name: str
    attr: str
    parse: Callable[[str, Any], Any]
    flag: str | None = None
    plain_env: bool = True  # also read from the environment without the AICLIENT_ prefix
    secret: bool = False


KEYS: tuple[Key, ...] = (
    Key("REQUIRED_API_KEY", "required_api_key", _as_str, "--api-key", secret=True),
    Key("SERVER_PORT", "port", _as_port, "--port"),
    Key("HOST", "host", _as_str, "--host", plain_env=False),
    Key(
        "MODEL_PROVIDER",
        "model_providers",
        lambda k, v: normalise_model_provider(v),
        "--model-provider",
    ),
    Key(
        "OPENAI_API_KEY",
        "openai_api_key",
        _as_opt_str,
        "--openai-api-key",
        plain_env=False,
        secret=True,
    ),
    Key(
        "OPENAI_BASE_URL",
        "openai_base_url",
        _as_opt_str,
        "--openai-base-url",
        plain_env=False,
    ),
    Key(
        "CLAUDE_API_KEY",
        "claude_api_key",
        _as_opt_str,
        "--claude-api-key",
        plain_env=False,
        secret=True,
    ),
    Key(
        "CLAUDE_BASE_URL",
        "claude_base_url",
        _as_opt_str,
        "--claude-base-url",
        plain_env=False,
    ),
    Key(
        "GEMINI_API_KEY",
        "gemini_api_key",
        _as_opt_str,
        None,
        plain_env=False,
        secret=True,
    ),
    Key("GEMINI_BASE_URL", "gemini_base_url", _as_opt_str, None, plain_env=False),
    Key("PROJECT_ID", "project_id", _as_opt_str, "--project-id", plain_env=False),
    Key(
        "GEMINI_OAUTH_CREDS_BASE64",
        "gemini_oauth_creds_base64",
        _as_opt_str,
        "--gemini-oauth-creds-base64",
        plain_env=False,
        secret=True,
    ),
    Key(
        "GEMINI_OAUTH_CREDS_FILE_PATH",
        "gemini_oauth_creds_file",
        _as_opt_str,
        "--gemini-oauth-creds-file",
        plain_env=False,
    ),
    Key(
        "KIRO_OAUTH_CREDS_BASE64",
        "kiro_oauth_creds_base64",
        _as_opt_str,
        "--kiro-oauth-creds-base64",
        plain_env=False,
        secret=True,
    ),
    Key(
        "KIRO_OAUTH_CREDS_FILE_PATH",
        "kiro_oauth_creds_file",
        _as_opt_str,
        "--kiro-oauth-creds-file",
        plain_env=False,
    ),
    Key(
        "QWEN_OAUTH_CREDS_FILE_PATH",
        "qwen_oauth_creds_file",
        _as_opt_str,
        "--qwen-oauth-creds-file",
        plain_env=False,
    ),
    # Endpoints and clients of the OAuth-backed types (providers/*_oauth): defaults are
    # the real services; set them for private gateways and tests.
    *(
        Key(name, name.lower(), _as_opt_str, None, plain_env=False)
        for name in (
            "GEMINI_OAUTH_TOKEN_URL",
            "GEMINI_OAUTH_CLIENT_ID",
            "GEMINI_OAUTH_CLIENT_SECRET",
            "QWEN_BASE_URL",
            "QWEN_OAUTH_BASE_URL",
            "QWEN_OAUTH_CLIENT_ID",
            "KIRO_BASE_URL",
            "KIRO_REFRESH_URL",
            "KIRO_REFRESH_IDC_URL",
            "KIRO_DEFAULT_MODEL",
        )
    ),
    Key(
        "SYSTEM_PROMPT_FILE_PATH",
        "system_prompt_file",
        _as_opt_str,
        "--system-prompt-file",
    ),
    Key(
        "SYSTEM_PROMPT_MODE",
        "system_prompt_mode",
        _one_of("overwrite", "append"),
        "--system-prompt-mode",
    ),
    Key(
        "PROMPT_LOG_BASE_NAME",
        "prompt_log_base_name",
        _as_str,
        "--prompt-log-base-name",
    ),
    Key(
        "PROMPT_LOG_MODE",
        "prompt_log_mode",
        _one_of("none", "console", "file"),
        "--log-prompts",
    ),
    Key("REQUEST_MAX_RETRIES", "request_max_retries", _as_int, "--request-max-retries"),
    Key("REQUEST_BASE_DELAY", "request_base_delay_ms", _as_int, "--request-base-delay"),
    Key("CRON_NEAR_MINUTES", "cron_near_minutes", _as_int, "--cron-near-minutes"),
    Key("CRON_REFRESH_TOKEN", "cron_refresh_token", _as_bool, "--cron-refresh-token"),
    Key("PROVIDER_POOLS_FILE_PATH", "pools_file", _as_opt_str, "--provider-pools-file"),
    Key("MAX_ERROR_COUNT", "max_error_count", _as_int, "--max-error-count"),
    Key(
        "REQUEST_CONNECT_TIMEOUT_MS",
        "connect_timeout_ms",
        _as_int,
        "--request-connect-timeout-ms",
    ),
    Key(
        "REQUEST_READ_TIMEOUT_MS",
        "read_timeout_ms",
        _as_int,
        "--request-read-timeout-ms",
    ),
    Key("DEFAULT_MAX_TOKENS", "default_max_tokens", _as_int, "--default-max-tokens"),
    Key("MAX_REQUEST_BODY_BYTES", "max_body_bytes", _as_int, "--max-request-body-bytes"),
    Key(
        "POOL_WRITE_DEBOUNCE_MS",
        "pool_write_debounce_ms",
        _as_int,
        "--pool-write-debounce-ms",
    ),
    Key("WORKERS", "workers", _as_int, "--workers"),
    Key("WORKER_METRICS_INTERVAL_MS", "worker_metrics_interval_ms", _as_int, None),
    Key(
        "ERROR_POLICY",
        "error_policy",
        lambda k, v: parse_error_policy(k, _json_value(k, v)),
        None,
        plain_env=False,
    ),
    Key("RATE_LIMIT_COOLDOWN_MS", "rate_limit_cooldown_ms", _as_int, None),
    Key("RATE_LIMIT_COOLDOWN_MAX_MS", "rate_limit_cooldown_max_ms", _as_int, None),
    Key("QUOTA_COOLDOWN_MAX_MS", "quota_cooldown_max_ms", _as_int, None),
    Key(
        "HEALTH_CHECK_INTERVAL_MS",
        "health_check_interval_ms",
        _as_int,
        "--health-check-interval-ms",
    ),
    Key("HEALTH_CHECK_TIMEOUT_MS", "health_check_timeout_ms", _as_int, None),
    Key("HEALTH_CHECK_MAX_TOKENS", "health_check_max_tokens", _as_int, None),
    Key("WARMUP_CONNECTIONS", "warmup_connections", _as_bool, "--warmup-connections"),
    Key("QUEUE_TIMEOUT_MS", "queue_timeout_ms", _as_int, None),
    Key("ADMIN_API_KEY", "admin_api_key", _as_opt_str, "--admin-api-key", secret=True),
    Key("poolStrategies", "pool_strategies", parse_strategies, None, plain_env=False),
    Key(
        "providerFallbackChain",
        "fallback_chain",
        parse_fallback_chain,
        None,
        plain_env=False,
    ),
    Key(
        "modelFallbackMapping",
        "model_fallbacks",
        parse_model_fallbacks,
        None,
        plain_env=False,
    ),
    Key("METRICS_PUBLIC", "metrics_public", _as_bool, "--metrics-public"),
    Key("HOT_RELOAD", "hot_reload", _as_bool, "--hot-reload"),
    Key("HOT_RELOAD_POLLING", "hot_reload_polling", _as_bool, "--hot-reload-polling"),
    Key(
        "LOG_LEVEL",
        "log_level",
        _one_of("debug", "info", "warning", "error"),
        "--log-level",
    ),
)

_KEYS_BY_NAME = {key.name: key for key in KEYS}

# Keys of the original's later versions that this build reads elsewhere or not yet;
# present in users' config.json files, so they must not raise "unknown key" warnings.
_KNOWN_LATER_KEYS = frozenset(
    {
        "CREDENTIAL_SWITCH_MAX_RETRIES",
        "RATE_LIMIT_COOLDOWN_ENABLED",
        "RATE_LIMIT_COOLDOWN_JITTER_MS",
        "SCHEDULED_HEALTH_CHECK",
        "KIRO_OAUTH_CREDS_DIR_PATH",
        "CUSTOM_MODELS_FILE",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the server needs, resolved once. Attribute docs live in README."""

    required_api_key: str = "123456"
    port: int = 3000
    host: str = "127.0.0.1"
    model_providers: tuple[str, ...] = ()
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    claude_api_key: str | None = None
    claude_base_url: str | None = None
    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    project_id: str | None = None
    gemini_oauth_creds_base64: str | None = None
    gemini_oauth_creds_file: str | None = None
    kiro_oauth_creds_base64: str | None = None
    kiro_oauth_creds_file: str | None = None
    qwen_oauth_creds_file: str | None = None
    gemini_oauth_token_url: str | None = None
    gemini_oauth_client_id: str | None = None
    gemini_oauth_client_secret: str | None = None
    qwen_base_url: str | None = None
    qwen_oauth_base_url: str | None = None
    qwen_oauth_client_id: str | None = None
    kiro_base_url: str | None = None
    kiro_refresh_url: str | None = None
    kiro_refresh_idc_url: str | None = None
    kiro_default_model: str | None = None
    system_prompt_file: str | None = None
    system_prompt_mode: str = "overwrite"
    prompt_log_base_name: str = "prompt_log"
    prompt_log_mode: str = "none"
    request_max_retries: int = 3
    request_base_delay_ms: int = 1000
    cron_near_minutes: int = 15
    cron_refresh_token: bool = False
    pools_file: str | None = None
    max_error_count: int = 3
    connect_timeout_ms: int = 10_000
    read_timeout_ms: int = 300_000
    default_max_tokens: int = 8192
    max_body_bytes: int = 64 * 1024 * 1024
    pool_write_debounce_ms: int = 1000
    log_level: str = "info"
    workers: int = 1
    worker_metrics_interval_ms: int = 1000
    metrics_public: bool = False
    hot_reload: bool = True
    hot_reload_polling: bool = False
    error_policy: ErrorPolicy = field(default_factory=ErrorPolicy)
    rate_limit_cooldown_ms: int = 30_000
    rate_limit_cooldown_max_ms: int = 300_000
    quota_cooldown_max_ms: int = 86_400_000
    health_check_interval_ms: int = 60_000
    health_check_timeout_ms: int = 15_000
    health_check_max_tokens: int = 16
    warmup_connections: bool = False
    queue_timeout_ms: int = 60_000
    admin_api_key: str | None = None
    pool_strategies: Mapping[str, PoolStrategy] = field(default_factory=dict)
    fallback_chain: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    model_fallbacks: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    config_file: str | None = None
    pools_file_explicit: bool = False

    @property
    def model_provider(self) -> str | None:
        """The default target provider type (the first of MODEL_PROVIDER)."""
        return self.model_providers[0] if self.model_providers else None

    def global_value(self, key: str) -> Any:
        """The value of a config.json key, for instances that omit it."""
        spec = _KEYS_BY_NAME.get(key)
        return getattr(self, spec.attr) if spec else None

    def secrets(self) -> list[str]:
        """Every secret value configured globally (for log redaction)."""
        values = (getattr(self, key.attr) for key in KEYS if key.secret)
        return [v for v in values if isinstance(v, str) and v]


def _json_error(path: Path, text: str, exc: json.JSONDecodeError) -> ConfigError:
    return ConfigError(
        f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    )


def read_json_object(path: Path, text: str) -> dict[str, Any]:
    """Parse `text` as a JSON object or raise ConfigError naming `path` and the place."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, text, exc) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: top level must be a JSON object, got {type(data).__name__}"
        )
    return data


def _apply(values: dict[str, Any], key: Key, raw: Any, origin: str) -> None:
    try:
        values[key.attr] = key.parse(key.name, raw)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc.message}") from None


def load_settings(
    config_path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve Settings: defaults < config.json < environment < `overrides` (CLI).

    `overrides` maps config.json key names to raw values. A missing config.json is fine
    at the default path and an error when named explicitly. Raises ConfigError.
    """
    env = os.environ if env is None else env
    overrides = overrides or {}
    values: dict[str, Any] = {}
    explicit = config_path is not None
    path = Path(config_path if config_path is not None else DEFAULT_CONFIG_PATH)
    config_file: str | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found") from None
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    if text is not None:
        config_file = str(path)
        for name, raw in read_json_object(path, text).items():
            spec = _KEYS_BY_NAME.get(name)
            if spec is None:
                if name not in _KNOWN_LATER_KEYS:
                    logger.warning("%s: unknown key %r ignored", path, name)
                continue
            if raw is None and spec.parse not in (_as_opt_str,):
                continue  # null means "use the default"
            _apply(values, spec, raw, str(path))
    for spec in KEYS:
        for env_name in (
            f"AICLIENT_{spec.name}",
            spec.name if spec.plain_env else None,
        ):
            if env_name and env_name in env:
                _apply(values, spec, env[env_name], f"environment {env_name}")
                break
    for name, raw in overrides.items():
        spec = _KEYS_BY_NAME[name]
        _apply(values, spec, raw, f"command line {spec.flag or name}")
    pools_explicit = "pools_file" in values and values["pools_file"] is not None
    known = {f.name for f in fields(Settings)}
    assert set(values) <= known
    return Settings(**values, config_file=config_file, pools_file_explicit=pools_explicit)
