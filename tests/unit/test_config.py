import subprocess
import sys

import pytest

from connector.core.config import Config, ConfigError
from connector.wiring import load_settings


def test_defaults_match_the_documented_ones():
    from connector.core.config import PROJECT_DIR

    config = load_settings({})
    assert (config.DATABASE_URL, config.PORT, config.CRM, config.QA_MAX_THRESHOLD, config.sections["mango"].quality_api) == (
        f"sqlite:///{PROJECT_DIR / 'var' / 'connector.db'}", 8080, "none", 9, False)


def test_the_data_directory_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    here = Config.from_env({})
    monkeypatch.chdir(tmp_path)
    assert Config.from_env({}).DATABASE_URL == here.DATABASE_URL
    assert Config.from_env({"DATA_DIR": str(tmp_path)}).DATABASE_URL == f"sqlite:///{tmp_path / 'connector.db'}"


def test_processes_starting_at_once_get_the_same_secret_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    for trial in range(20):
        data_dir = tmp_path / str(trial)
        with ThreadPoolExecutor(4) as pool:
            keys = set(pool.map(lambda _: Config.from_env({"DATA_DIR": str(data_dir)}).with_secret_key().SECRET_KEY,
                                range(4)))
        assert len(keys) == 1
        assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_every_setting_is_documented_in_the_example_file():
    from pathlib import Path
    from dataclasses import fields

    documented = {line.split("=", 1)[0] for line in Path("settings.example.env").read_text().splitlines()
                  if line and not line.startswith("#")}
    from connector import registry

    read = {f.name for f in fields(Config)} - {"LOG_LEVEL", "sections"} | set(registry.environment_names())
    assert read - documented == set()


@pytest.mark.parametrize("env, needle", [
    ({"PORT": "eighty"}, "PORT: expected an integer"),
    ({"ADMIN_TOKEN": "demo-token"}, "ADMIN_TOKEN: at least 32 characters, got 10"),
    ({"ADMIN_TOKEN": "ab" * 20}, "ADMIN_TOKEN: too repetitive"),
    ({"SESSION_IDLE_HOURS": "48"}, "SESSION_IDLE_HOURS: expected 1 to SESSION_MAX_HOURS (24"),
    ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES: expected 0 to 5"),
    ({"QA_ENABLED": "perhaps"}, "QA_ENABLED: expected true or false"),
    ({"QA_MAX_THRESHOLD": "42"}, "QA_MAX_THRESHOLD: must lie within"),
    ({"QA_SCALE_MIN": "10", "QA_SCALE_MAX": "5"}, "QA_SCALE_MAX"),
    ({"QA_TAG_TEMPLATE": "low score"}, "QA_TAG_TEMPLATE: must contain {score}"),
    ({"QA_HIGH_SCORES": "skip"}, "QA_HIGH_SCORES: must be one of default, ignore, record"),
    ({"CRM": "salesforce"}, "CRM: expected none or a comma list of amocrm, bitrix24, webhook"),
    ({"CRM": "none,amocrm"}, "CRM: expected none or a comma list"),
    ({"SMTP_SECURITY": "ssl"}, "SMTP_SECURITY: expected starttls, tls or none"),
    ({"SMTP_HOST": "smtp.example.ru"}, "SMTP_FROM: the From address"),
    ({"SMTP_PORT": "70000"}, "SMTP_PORT: must be between 1 and 65535"),
    ({"LOW_SCORE_TASK": "true", "LOW_SCORE_TASK_TEMPLATE": "Перезвонить {score!r}"}, "LOW_SCORE_TASK_TEMPLATE"),
    ({"LOW_SCORE_TASK_HOURS": "0"}, "LOW_SCORE_TASK_HOURS: expected 1 to 2160"),
    ({"CRM": "bitrix24", "BITRIX24_PORTAL_URL": "p.bitrix24.ru"}, "BITRIX24_PORTAL_URL: expected https://"),
    ({"CRM": "bitrix24", "BITRIX24_PORTAL_URL": "https://p.bitrix24.ru"}, "BITRIX24_CLIENT_ID: set it"),
    ({"BITRIX24_SCORE_FIELD": "QA_SCORE"}, "BITRIX24_SCORE_FIELD: expected a user field code"),
    ({"BITRIX24_RATE_LIMIT": "50"}, "BITRIX24_RATE_LIMIT"),
    ({"CRM": "webhook", "WEBHOOK_TARGET_URL": "bi.example/hook"}, "WEBHOOK_TARGET_URL: expected an http(s) URL"),
    ({"CRM": "webhook", "WEBHOOK_TARGET_URL": "https://bi.example/hook", "WEBHOOK_TARGET_SECRET": "hunter2"},
     "WEBHOOK_TARGET_SECRET: expected whsec_"),
    ({"CRM": "amocrm", "AMOCRM_BASE_URL": "a.amocrm.ru"}, "AMOCRM_BASE_URL: expected https://"),
    ({"AMOCRM_USER_MAP": "101=5"}, "AMOCRM_USER_MAP"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"SCORES_WEBHOOK_SECRET": "not-a-secret"}, "SCORES_WEBHOOK_SECRET"),
    ({"SCORES_WEBHOOK_SECRET": "whsec_%%%"}, "SCORES_WEBHOOK_SECRET"),
])
def test_invalid_values_name_the_setting(env, needle):
    with pytest.raises(ConfigError) as err:
        load_settings(env, dotenv=False)  # the environment's rules, then each target's own
    assert needle in str(err.value)


def test_user_map_is_parsed():
    assert load_settings({"AMOCRM_USER_MAP": "101:5551, 102:5552"}).user_map("amocrm") == {"101": 5551, "102": 5552}


def test_secret_key_is_generated_once_and_kept(tmp_path):
    first = Config.from_env({"DATA_DIR": str(tmp_path)}).with_secret_key()
    second = Config.from_env({"DATA_DIR": str(tmp_path)}).with_secret_key()
    assert len(first.SECRET_KEY) > 40 and first.SECRET_KEY == second.SECRET_KEY
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_repr_hides_secrets():
    config = Config.from_env({"ADMIN_TOKEN": "tok-123-Hk4nP8qR2vX6zB9mC3tW7yL5xx", "DATABASE_URL": "postgresql+psycopg://u:pw@h/db"})
    assert "tok-123" not in repr(config) and "pw" not in repr(config)


def test_bad_setting_stops_start_up_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import app; app.main(['db', 'upgrade'])"],
                            env={"QA_MAX_THRESHOLD": "abc", "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration error: QA_MAX_THRESHOLD: expected an integer, got 'abc'"


def test_crm_lists_targets_in_order_once_each():
    secret = "whsec_" + "QUJD" * 8
    config = Config.from_env({"CRM": "webhook, amocrm,webhook", "WEBHOOK_TARGET_URL": "https://bi.example/hook",
                              "WEBHOOK_TARGET_SECRET": secret, "AMOCRM_BASE_URL": "https://x.amocrm.ru",
                              "AMOCRM_LONG_LIVED_TOKEN": "t"})
    assert config.targets == ("webhook", "amocrm")
    assert Config.from_env({}).targets == ()
