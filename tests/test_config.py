"""Configuration from the environment: defaults, normalization, refusals."""

import pytest

from facets import create_app


@pytest.mark.parametrize(
    "given, expected", [("info", "INFO"), ("Warning", "WARNING"), ("DEBUG", "DEBUG")]
)
def test_log_level_is_case_insensitive(app_config, given, expected):
    assert create_app({**app_config, "LOG_LEVEL": given}).config["LOG_LEVEL"] == expected


def test_an_unknown_log_level_is_refused_at_start(app_config):
    with pytest.raises(RuntimeError, match="LOG_LEVEL"):
        create_app({**app_config, "LOG_LEVEL": "loud"})


def test_production_refuses_to_start_without_a_jwt_secret(app_config):
    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        create_app({**app_config, "FACETS_ENV": "production", "JWT_SECRET": None})


def test_without_a_jwt_secret_development_uses_a_random_one(app_config):
    first = create_app({**app_config, "JWT_SECRET": None}).config["JWT_SECRET"]
    second = create_app({**app_config, "JWT_SECRET": None}).config["JWT_SECRET"]
    assert first and second and first != second
