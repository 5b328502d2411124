"""The `metrics` block of coordinator.yaml: defaults, values, and one-line errors that name the key and never
quote the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelmesh.config import METRICS_TOKEN_ENV, ConfigError, Settings, load

TOKEN = "a-metrics-token-of-some-length"


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load(path)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_TOKEN_ENV, raising=False)
    s = load(None)
    assert (s.metrics_token, s.metrics_public, s.metrics_dir, s.metrics_max_bucket_series) == (None, False, None, 500)


def test_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_TOKEN_ENV, raising=False)
    s = _load(tmp_path, f"metrics:\n  token: {TOKEN}\n  public: true\n  dir: {tmp_path}/m\n  max_bucket_series: 3\n")
    assert (s.metrics_token, s.metrics_public, s.metrics_dir, s.metrics_max_bucket_series) == (
        TOKEN,
        True,
        tmp_path / "m",
        3,
    )


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(METRICS_TOKEN_ENV, "from-the-environment-token")
    s = _load(tmp_path, f"metrics:\n  token: {TOKEN}\n")
    assert s.metrics_token == "from-the-environment-token"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics: 3\n", "metrics: expected a mapping"),
        ("metrics:\n  tokn: x\n", "metrics.tokn: unknown key"),
        ("metrics:\n  token: short\n", "metrics.token: expected a string of at least 16"),
        ("metrics:\n  public: yes please\n", "metrics.public: expected true or false"),
        ("metrics:\n  max_bucket_series: -1\n", "metrics.max_bucket_series: expected a whole number"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.delenv(METRICS_TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert str(e.value).startswith(message), str(e.value)
    assert "short" not in str(e.value)  # the token's text is never quoted
