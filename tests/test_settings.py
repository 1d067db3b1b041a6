"""Config loading: file, env overrides, secrets, paths, durations, schedules, problem lines."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr

from harvester.config import (
    Settings,
    config_file,
    format_duration,
    load_settings,
    parse_duration,
    secret_values,
    to_toml,
)
from harvester.config.schedule import missed_run
from harvester.errors import ConfigError, UsageError

TARGET = """
[[targets]]
name = "shop"
url = "https://shop.example.com/"
schedule = "*/15 * * * *"
"""


pytestmark = pytest.mark.usefixtures("clean_env")


def write(folder: Path, text: str, name: str = "harvester.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TARGET))
    assert settings.config_path == tmp_path / "harvester.toml"
    assert settings.state.dir == tmp_path / "state"
    assert settings.state.data_dir == tmp_path / "data"
    assert settings.state.keep_runs == 50
    assert (settings.log.level, settings.log.format) == ("info", "text")
    assert settings.browser.headless is True
    assert settings.browser.executable_path is None
    flink = settings.flink
    assert (flink.mode, flink.runtime, flink.parallelism, flink.source) == (
        "embedded",
        "batch",
        1,
        "auto",
    )
    assert (flink.max_rows_per_job, flink.jobs_per_worker, flink.statements) == (100_000, 30, [])
    assert (settings.http.bind, settings.http.port) == ("127.0.0.1", 8787)
    daemon = settings.daemon
    assert daemon.shutdown_grace == timedelta(seconds=30)
    assert (daemon.catch_up, daemon.run_on_start, daemon.max_concurrent_harvests) == (
        True,
        False,
        2,
    )
    target = settings.target("shop")
    assert (target.timezone, target.enabled, target.retries) == ("UTC", True, 3)
    assert (target.databases, target.stores, target.jitter) == (["*"], ["*"], timedelta(0))
    assert (target.ready.wait_until, target.ready.settle) == ("load", timedelta(0))
    assert target.auth.steps == []
    limits = target.limits
    assert (limits.batch_size, limits.max_records, limits.consistency) == (10_000, None, "batched")
    assert (limits.max_value_bytes, limits.max_batch_bytes) == (16 * 2**20, 8 * 2**20)
    assert (limits.page_timeout, limits.harvest_timeout) == (
        timedelta(seconds=30),
        timedelta(minutes=10),
    )


def test_config_file_comes_from_argument_then_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_file() == tmp_path / "harvester.toml"
    monkeypatch.setenv("HARVESTER_CONFIG", str(tmp_path / "from-env.toml"))
    assert config_file() == tmp_path / "from-env.toml"
    assert config_file(Path("given.toml")) == tmp_path / "given.toml"


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    (line,) = problems(missing)
    assert line.startswith(f"{missing}: config file not found; expected ")


def test_toml_syntax_errors_give_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[state]\ndir = "state"\nkeep_runs = = 3\n')
    (line,) = problems(path)
    assert line.startswith(f"{path}: line 3, column ")
    assert line.endswith("; expected valid TOML")


def test_the_four_problems_of_the_issue_are_all_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [state]
        colour = "blue"

        [[targets]]
        name = "a"
        url = "https://a.example/"
        schedule = "*/5 * * * *"

        [[targets]]
        name = "b"
        schedule = "61 * * * *"

        [targets.limits]
        batch_size = -5
        """,
    )
    lines = problems(path)
    assert len(lines) == 4, lines
    by_path = {line.split(": ")[1]: line for line in lines}
    assert set(by_path) == {
        "state.colour",
        "targets[1].schedule",
        "targets[1].url",
        "targets[1].limits.batch_size",
    }
    assert all(line.startswith(f"{path}: ") and "; expected " in line for line in lines)
    known = "dir, data_dir, keep_runs, keep_failed_runs"
    assert f"unknown key; expected one of: {known}" in by_path["state.colour"]
    assert '"61 * * * *"' in by_path["targets[1].schedule"]
    assert "required key is missing" in by_path["targets[1].url"]
    assert "-5" in by_path["targets[1].limits.batch_size"]


def test_an_unknown_key_suggests_the_closest_key_of_its_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [browser]
        headles = true

        [[targets]]
        name = "a"
        url = "https://a.example/"
        shedule = "5m"
        [targets.ready]
        funtion = "true"
        """,
    )
    by_path = {line.split(": ")[1]: line for line in problems(path)}
    assert "targets[0].schedule" in by_path  # the key it was meant to be is missing
    for where, meant in (
        ("browser.headles", "headless"),
        ("targets[0].shedule", "schedule"),
        ("targets[0].ready.funtion", "function"),
    ):
        assert (
            f": {where}: unknown key (did you mean {meant!r}?); expected one of: "
            in (by_path[where])
        )


@pytest.mark.parametrize(
    ("toml", "where", "text"),
    [
        ('[flink]\nmode = "remote"', "flink.address", 'required when mode = "remote"'),
        ('[flink]\naddress = "nohost"', "flink.address", "is not host:port"),
        ('[log]\nformat = "xml"', "log.format", '"text" | "json"'),
        ("[http]\nport = 70000", "http.port", "integer >= 0, <= 65535"),
        ('[daemon]\nshutdown_grace = "soon"', "daemon.shutdown_grace", "is not a duration"),
        ('[browser]\nconnect_url = "ftp://x"', "browser.connect_url", "browser endpoint URL"),
        ('[state]\nkeep_runs = "many"', "state.keep_runs", "integer > 0"),
        ('state = "x"', "state", "expected table"),
    ],
)
def test_bad_values_name_path_and_expectation(
    tmp_path: Path, toml: str, where: str, text: str
) -> None:
    (line,) = problems(write(tmp_path, toml))
    assert line.startswith(f"{tmp_path / 'harvester.toml'}: {where}: ")
    assert text in line


@pytest.mark.parametrize(
    ("fields", "where", "text"),
    [
        ('url = "ftp://x/"', "targets[0].url", "not an http(s) URL"),
        ('name = "../etc"', "targets[0].name", "not a usable target name"),
        ('timezone = "Mars/Olympus"', "targets[0].timezone", "unknown time zone"),
        ('schedule = "0s"', "targets[0].schedule", "0s is not positive"),
        ('schedule = "* * *"', "targets[0].schedule", "3 fields instead of 5"),
        ('schedule = "0 9 * * 8"', "targets[0].schedule", "bad day of week"),
        ("retries = -1", "targets[0].retries", "integer >= 0"),
        ('ready = {wait_until = "idle"}', "targets[0].ready.wait_until", '"networkidle"'),
        ("limits = {max_records = 0}", "targets[0].limits.max_records", "integer > 0"),
        ('limits = {harvest_timeout = "0ms"}', "targets[0].limits.harvest_timeout", "above 0"),
        ('auth = {steps = [{action = "click"}]}', "targets[0].auth.steps[0].selector", "click"),
        ('auth = {steps = [{action = "goto"}]}', "targets[0].auth.steps[0].url", "goto"),
        ('auth = {steps = [{action = "wait_for"}]}', "targets[0].auth.steps[0].url", "selector"),
        (
            'auth = {steps = [{action = "fill", selector = "#a"}]}',
            "targets[0].auth.steps[0].value",
            "fill",
        ),
        (
            'auth = {storage_state = "s.json", profile_dir = "p"}',
            "targets[0].auth.profile_dir",
            "exclude each other",
        ),
    ],
)
def test_bad_targets_name_path_and_expectation(
    tmp_path: Path, fields: str, where: str, text: str
) -> None:
    base = {"name": '"t"', "url": '"https://t.example/"', "schedule": '"15m"'}
    key = fields.split(" ", 1)[0]
    base[key] = fields.split(" = ", 1)[1]
    body = "\n".join(f"{k} = {v}" for k, v in base.items())
    (line,) = problems(write(tmp_path, f"[[targets]]\n{body}\n"))
    assert f": {where}: " in line
    assert text in line
    assert "; expected " in line


def test_duplicate_target_names_point_at_the_second(tmp_path: Path) -> None:
    (line,) = problems(write(tmp_path, TARGET + TARGET))
    assert ": targets[1].name: " in line
    assert "already used by targets[0]" in line


def test_a_profile_needs_a_local_browser(tmp_path: Path) -> None:
    text = (
        '[browser]\nconnect_url = "http://127.0.0.1:9222"\n'
        + TARGET
        + '[targets.auth]\nprofile_dir = "p"\n'
    )
    (line,) = problems(write(tmp_path, text))
    assert ": targets[0].auth.profile_dir: " in line


def test_a_removed_key_names_its_replacement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[browser]\nmax_concurrent = 2\n" + TARGET)
    assert problems(path) == [
        f"{path}: browser.max_concurrent: removed; use daemon.max_concurrent_harvests"
    ]
    monkeypatch.setenv("HARVESTER_BROWSER__MAX_CONCURRENT", "3")
    assert problems(write(tmp_path / "env", TARGET)) == [
        "$HARVESTER_BROWSER__MAX_CONCURRENT: browser.max_concurrent: removed; "
        "use daemon.max_concurrent_harvests"
    ]


def test_env_overrides_beat_the_file_with_nesting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[flink]\nparallelism = 4\n[log]\nlevel = 'warning'\n" + TARGET)
    monkeypatch.setenv("HARVESTER_FLINK__PARALLELISM", "2")
    monkeypatch.setenv("HARVESTER_LOG__LEVEL", "DEBUG")
    monkeypatch.setenv("HARVESTER_BROWSER__ARGS", '["--lang=de"]')
    monkeypatch.setenv("HARVESTER_DAEMON__SHUTDOWN_GRACE", "5")
    monkeypatch.setenv("HARVESTER_STATE__DIR", "elsewhere")
    settings = load_settings(path)
    assert settings.flink.parallelism == 2
    assert settings.log.level == "debug"
    assert settings.browser.args == ["--lang=de"]
    assert settings.daemon.shutdown_grace == timedelta(seconds=5)
    # Relative paths from the environment also mean "next to the config file".
    assert settings.state.dir == tmp_path / "elsewhere"
    assert settings.targets[0].name == "shop"


def test_env_problems_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, TARGET)
    monkeypatch.setenv("HARVESTER_FLINK__PARALLELISM", "lots")
    monkeypatch.setenv("HARVESTER_FLINK__PARALELISM", "2")
    lines = problems(path)
    assert sorted(lines) == sorted(
        [
            '$HARVESTER_FLINK__PARALLELISM: flink.parallelism: invalid value "lots"; '
            "expected integer > 0",
            "$HARVESTER_FLINK__PARALELISM: flink.paralelism: unknown key "
            "(did you mean 'parallelism'?); expected one of: "
            "mode, delivery, runtime, log_dir, checkpoint_dir, checkpoint_interval, "
            "log_retention, max_lag, address, parallelism, jars, max_rows_per_job, source, "
            "jobs_per_worker, statements",
        ]
    )


def test_env_json_errors_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, TARGET)
    monkeypatch.setenv("HARVESTER_TARGETS", "[{not json")
    (line,) = problems(path)
    assert line.startswith("$HARVESTER_TARGETS: not valid JSON")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = write(
        tmp_path / "conf",
        f"""
        secrets_dir = "../secrets"
        [state]
        dir = "../var/state"
        data_dir = "/srv/data"
        [browser]
        executable_path = "bin/chromium"
        [flink]
        jars = ["jars/kafka.jar"]
        {TARGET}
        [targets.auth]
        storage_state = "auth/state.json"
        """,
    )
    settings = load_settings(path)
    assert settings.secrets_dir == tmp_path / "secrets"
    assert settings.state.dir == tmp_path / "var" / "state"
    assert settings.state.data_dir == Path("/srv/data")
    assert settings.browser.executable_path == tmp_path / "conf" / "bin" / "chromium"
    assert settings.flink.jars == [tmp_path / "conf" / "jars" / "kafka.jar"]
    assert settings.targets[0].auth.storage_state == tmp_path / "conf" / "auth" / "state.json"


def test_home_paths_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = load_settings(write(tmp_path, '[state]\ndir = "~/harvester"\n'))
    assert settings.state.dir == tmp_path / "home" / "harvester"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5s", timedelta(seconds=1.5)),
        ("45", timedelta(seconds=45)),
        (45, timedelta(seconds=45)),
        (0.25, timedelta(milliseconds=250)),
    ],
)
def test_durations_parse(text: str | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "-5s", "5 minutes", "5x", -1, True, "1e9999d"])
def test_non_durations_are_refused(text: object) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    "value",
    [
        timedelta(0),
        timedelta(milliseconds=500),
        timedelta(minutes=90),
        timedelta(days=2, seconds=1),
        timedelta(microseconds=1500),
    ],
)
def test_durations_format_back_to_themselves(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_durations_in_the_config(tmp_path: Path) -> None:
    text = TARGET + '[targets.limits]\npage_timeout = 2\nharvest_timeout = "1h30m"\n'
    limits = load_settings(write(tmp_path, text)).targets[0].limits
    assert limits.page_timeout == timedelta(seconds=2)
    assert limits.harvest_timeout == timedelta(minutes=90)


def test_cron_weekdays_count_from_sunday(tmp_path: Path) -> None:
    text = TARGET.replace("*/15 * * * *", "0 9 * * 0") + 'timezone = "Europe/Berlin"\n'
    trigger = load_settings(write(tmp_path, text)).targets[0].trigger()
    assert isinstance(trigger, CronTrigger)
    # 2026-11-26 is a Thursday; crontab's day 0 is Sunday (APScheduler 3's own 0 is Monday).
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, now)
    assert fire is not None
    assert (fire.strftime("%A %H:%M"), fire.day) == ("Sunday 09:00", 29)
    assert str(fire.tzinfo) == "Europe/Berlin"


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("7", {"Sunday"}),
        ("sat,sun", {"Saturday", "Sunday"}),
        ("*/3", {"Sunday", "Wednesday", "Saturday"}),
        ("5-7", {"Friday", "Saturday", "Sunday"}),
    ],
)
def test_cron_weekday_fields(tmp_path: Path, field: str, days: set[str]) -> None:
    text = TARGET.replace("*/15 * * * *", f"0 0 * * {field}")
    trigger = load_settings(write(tmp_path, text)).targets[0].trigger()
    fire = datetime(2026, 11, 22, tzinfo=UTC)
    seen = set()
    for _ in range(7):
        fire = trigger.get_next_fire_time(None, fire + timedelta(seconds=1))
        seen.add(fire.strftime("%A"))
    assert seen == days


def test_interval_schedules_give_interval_triggers(tmp_path: Path) -> None:
    text = TARGET.replace("*/15 * * * *", "90m") + 'jitter = "10s"\n'
    trigger = load_settings(write(tmp_path, text)).targets[0].trigger()
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == timedelta(minutes=90)
    assert trigger.jitter == 10


def test_missed_run() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    hourly = IntervalTrigger(hours=1, timezone="UTC")
    assert missed_run(hourly, now - timedelta(hours=2), now)
    assert not missed_run(hourly, now - timedelta(minutes=10), now)
    assert not missed_run(hourly, None, now)
    # A naive last start counts as UTC.
    assert missed_run(hourly, (now - timedelta(hours=2)).replace(tzinfo=None), now)
    daily = CronTrigger(hour=6, minute=0, timezone="UTC")
    assert missed_run(daily, datetime(2026, 11, 25, 6, 0, tzinfo=UTC), now)
    assert not missed_run(daily, datetime(2026, 11, 26, 6, 0, tzinfo=UTC), now)


def test_target_lookup_names_the_known_targets(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TARGET + TARGET.replace("shop", "blog")))
    assert settings.target("blog").name == "blog"
    with pytest.raises(UsageError, match=r"no target named 'nope'.*targets: shop, blog"):
        settings.target("nope")


SECRET_TARGET = """
[[targets]]
name = "crm"
url = "https://crm.example.com/?token=${secret:CRM_TOKEN}"
schedule = "1h"
[targets.auth]
steps = [
  {action = "fill", selector = "#user", value = "alice"},
  {action = "fill", selector = "#pw", value = "${secret:crm_password}"},
]
[[flink.statements]]
sql = "CREATE TABLE t (x STRING) WITH ('password' = '${secret:DB_PW}')"
"""


def test_secrets_resolve_from_env_and_from_the_secrets_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "secrets", "hunter2\n", name="crm_password")
    write(tmp_path / "secrets", "dbpass", name="DB_PW")
    monkeypatch.setenv("CRM_TOKEN", "tok-123")
    settings = load_settings(write(tmp_path, SECRET_TARGET))
    target = settings.targets[0]
    assert target.url == "https://crm.example.com/?token=tok-123"
    value = target.auth.steps[1].value
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert "'password' = 'dbpass'" in settings.flink.statements[0].sql
    assert sorted(secret_values(settings)) == ["dbpass", "hunter2", "tok-123"]


def test_the_env_beats_the_secrets_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "secrets", "from-file", name="crm_password")
    monkeypatch.setenv("crm_password", "from-env")
    monkeypatch.setenv("CRM_TOKEN", "t")
    monkeypatch.setenv("DB_PW", "d")
    settings = load_settings(write(tmp_path, SECRET_TARGET))
    assert settings.targets[0].auth.steps[1].value == SecretStr("from-env")


def test_the_secrets_folder_can_come_from_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CRM_TOKEN", "crm_password", "DB_PW"):
        write(tmp_path / "vault", f"v-{name}", name=name)
    monkeypatch.setenv("HARVESTER_SECRETS_DIR", str(tmp_path / "vault"))
    settings = load_settings(write(tmp_path / "conf", SECRET_TARGET))
    assert settings.targets[0].url.endswith("token=v-CRM_TOKEN")


def test_masked_dump_shows_templates_never_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("CRM_TOKEN", "tok-123"), ("crm_password", "hunter2"), ("DB_PW", "pw9")):
        monkeypatch.setenv(name, value)
    settings = load_settings(write(tmp_path, SECRET_TARGET))
    dump = settings.masked_dump()
    target = dump["targets"][0]
    assert target["url"] == "https://crm.example.com/?token=${secret:CRM_TOKEN}"
    assert target["auth"]["steps"][1]["value"] == "${secret:crm_password}"
    # A literal step value is not a secret, but a SecretStr field is still masked.
    assert target["auth"]["steps"][0]["value"] == "****"
    assert "${secret:DB_PW}" in dump["flink"]["statements"][0]["sql"]
    text = to_toml(dump) + repr(dump)
    for secret in ("tok-123", "hunter2", "pw9"):
        assert secret not in text


def test_a_missing_secret_names_path_and_name_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_TOKEN", "tok-123")
    monkeypatch.setenv("DB_PW", "pw9")
    path = write(tmp_path, SECRET_TARGET)
    (line,) = problems(path)
    assert line == (
        f"{path}: targets[0].auth.steps[1].value: secret crm_password is not set; expected an "
        f"environment variable crm_password or a file {tmp_path / 'secrets' / 'crm_password'}"
    )


def test_bad_secret_references_are_reported(tmp_path: Path) -> None:
    (line,) = problems(write(tmp_path, '[http]\nbind = "${secret:../etc/passwd}"\n'))
    assert ": http.bind: bad secret reference ${secret:../etc/passwd}; expected " in line


def test_problem_lines_never_show_secret_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE", "ftp://user:s3cret@example.com/")
    monkeypatch.setenv("PORT_SECRET", "s3cret")
    text = '[http]\nport = "${secret:PORT_SECRET}"\n' + TARGET.replace(
        "https://shop.example.com/", "${secret:SITE}"
    )
    lines = problems(write(tmp_path, text))
    assert len(lines) == 2
    assert not any("s3cret" in line for line in lines)
    assert any(': targets[0].url: "${secret:SITE}" is not an http(s) URL' in line for line in lines)


def test_the_toml_dump_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    text = (
        '[flink]\njars = ["a.jar"]\n[[flink.statements]]\nsql = """\nSELECT 1\nFROM t"""\n'
        + TARGET
        + '[targets.auth]\nsteps = [{action = "click", selector = "#go"}]\n'
        + '[targets.ready]\nsettle = "1.5s"\n'
    )
    settings = load_settings(write(tmp_path, text))
    dumped = to_toml(settings.masked_dump())
    assert tomllib.loads(dumped)["flink"]["statements"][0]["sql"] == "SELECT 1\nFROM t"
    again = load_settings(write(tmp_path / "again", dumped))
    assert again.model_dump() == settings.model_dump()


def test_settings_built_in_code_use_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only load_settings() reads the environment; settings built in code take their arguments.
    monkeypatch.setenv("HARVESTER_LOG__LEVEL", "debug")
    settings = Settings()
    assert settings.log.level == "info"
    assert Settings(log={"level": "error"}).log.level == "error"
    assert settings.config_path is None
    assert settings.state.dir == Path.cwd() / "state"
    assert settings.masked_dump()["targets"] == []


def test_http_credentials_and_headers_are_secrets_in_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASIC_PW", "b4sic")
    config = write(
        tmp_path,
        """
[[targets]]
name = "staging"
url = "https://staging.example.com/"
schedule = "1h"
[targets.auth]
http_credentials = {username = "qa", password = "${secret:BASIC_PW}"}
extra_http_headers = {Authorization = "Bearer literal-token", X-Env = "staging"}
""",
    )
    settings = load_settings(config)
    auth = settings.targets[0].auth
    assert auth.http_credentials is not None
    assert auth.http_credentials.password.get_secret_value() == "b4sic"
    assert auth.extra_http_headers["Authorization"].get_secret_value() == "Bearer literal-token"
    dump = settings.masked_dump()["targets"][0]["auth"]
    assert dump["http_credentials"] == {"username": "qa", "password": "${secret:BASIC_PW}"}
    assert dump["extra_http_headers"] == {"Authorization": "****", "X-Env": "****"}
    text = to_toml(settings.masked_dump()) + repr(settings)
    assert "b4sic" not in text and "literal-token" not in text
