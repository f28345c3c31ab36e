"""The table of settings, from which the options, ini values, defaults and parsing all come (no pytester)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_jaxperf import plugin
from pytest_jaxperf.options import INI_HELP_ORDER, SETTINGS, Setting, ini_settings
from pytest_jaxperf.settings import FIELD_DEFAULTS, PluginSettings

BY_KEY = {setting.key: setting for setting in SETTINGS}


class _Config:
    """Stands in for pytest's config: the options as parsed from a command line, and the ini file's values."""

    def __init__(self, tmp_path: Path, options: dict[str, Any], ini: dict[str, Any]) -> None:
        parsed = {
            setting.key: setting.option_arguments(lambda parse: parse)["default"]
            for setting in SETTINGS
            if setting.option is not None
        }
        self.option = SimpleNamespace(**(parsed | options))
        self.ini = ini
        self.invocation_params = SimpleNamespace(dir=tmp_path / "here")
        self.rootpath = tmp_path / "root"

    def getoption(self, name: str, default: Any = None) -> Any:
        return getattr(self.option, name, default)

    def getini(self, name: str) -> Any:
        setting = BY_KEY[name]
        assert setting.has_ini, f"{name} is no ini value"
        return self.ini.get(name, setting.ini_default)


def settings_from(tmp_path: Path, options: dict[str, Any] | None = None, **ini: Any) -> PluginSettings:
    config = _Config(tmp_path, options or {}, ini)
    return PluginSettings.from_pytest_config(cast("pytest.Config", config))


def test_every_field_but_the_rootdir_has_one_setting_and_its_default() -> None:
    named = [setting.field for setting in SETTINGS if setting.field is not None]
    assert len(named) == len(set(named))
    fields = [field.name for field in dataclasses.fields(PluginSettings)]
    assert set(named) == set(fields) - {"rootdir"}
    assert dataclasses.asdict(PluginSettings()) == {**FIELD_DEFAULTS, "rootdir": Path()}


def test_the_defaults_are_the_documented_ones() -> None:
    # Written once, in the table; read here as a reader of the docs expects them.
    assert PluginSettings() == PluginSettings(
        measure=False,
        baselines_dir=Path("baselines"),
        budget_seconds=2.0,
        ci_target=0.02,
        threshold=0.10,
        replay_threshold=0.05,
        limit_ceiling=0.5,
        mode="latency",
        repeat=3,
        program_limit_bytes=2 * 1024**2,
        profile_on="all",
    )
    assert PluginSettings.program_limit_bytes == 2 * 1024**2  # read as a class attribute (core/export.py)


def test_each_option_is_named_as_argparse_names_its_dest() -> None:
    assert len(BY_KEY) == len(SETTINGS)
    for setting in SETTINGS:
        if setting.option is not None:
            assert setting.option == "--" + setting.key.replace("_", "-")


def test_the_ini_help_order_names_every_ini_value_once() -> None:
    assert len(INI_HELP_ORDER) == len(set(INI_HELP_ORDER))
    assert [setting.key for setting in ini_settings()] == list(INI_HELP_ORDER)


def test_an_unset_ini_value_reads_as_the_fields_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the baselines folder is checked on disk: none is there
    for setting in SETTINGS:
        if setting.field is not None and setting.has_ini:
            read = setting.read(setting.ini_default, invocation_dir=Path(), rootdir=Path())
            assert read == FIELD_DEFAULTS[setting.field], setting.key


def test_help_texts_show_the_tables_defaults() -> None:
    def option_help(key: str) -> str:
        help_text: str = BY_KEY[key].option_arguments(lambda parse: parse)["help"]
        return help_text

    assert option_help("jaxperf_budget").endswith("(default 2)")
    assert option_help("jaxperf_threshold").endswith("e.g. 0.1 (default 0.1)")
    assert option_help("jaxperf_replay_threshold").endswith("regresses; default 0.05)")
    assert option_help("jaxperf_repeat").endswith("(default 3)")
    assert option_help("jaxperf_mode").endswith("(default latency)")
    assert option_help("jaxperf_profile_on").endswith("(default all)")
    assert option_help("jaxperf_baselines").endswith("else 'baselines')")


def test_option_arguments_by_kind() -> None:
    checked: list[Any] = []

    def check(parse: Any) -> Any:
        checked.append(parse)
        return parse

    with_ini = BY_KEY["jaxperf_explain"].option_arguments(check)
    assert with_ini["action"] == "store_true"
    assert with_ini["default"] is None  # not given: the ini value is read
    assert BY_KEY["jaxperf_measure_peaks"].option_arguments(check)["default"] is False
    assert "type" not in BY_KEY["jaxperf_json"].option_arguments(check)
    assert "type" not in BY_KEY["jaxperf_mode"].option_arguments(check)  # argparse checks the choices
    assert checked == []
    repeat = BY_KEY["jaxperf_repeat"].option_arguments(check)
    assert (repeat["metavar"], repeat["default"]) == ("N", None)
    assert checked == [BY_KEY["jaxperf_repeat"].parse]


def test_a_bad_option_value_is_argparses_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()

    class Group:
        def addoption(self, *names: str, **kwargs: Any) -> None:
            parser.add_argument(*names, **kwargs)

    class Parser:
        def getgroup(self, *args: Any) -> Group:
            return Group()

        def addini(self, *args: Any, **kwargs: Any) -> None:
            pass

    plugin.pytest_addoption(cast("pytest.Parser", Parser()))
    assert parser.parse_args(["--jaxperf-budget", "0.5"]).jaxperf_budget == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--jaxperf-budget", "x"])
    assert "argument --jaxperf-budget: expected a positive number, got 'x'" in capsys.readouterr().err


def test_the_command_line_wins_over_the_ini_file(tmp_path: Path) -> None:
    given = {
        "jaxperf_budget": 0.5,
        "jaxperf_threshold": 0.2,
        "jaxperf_mode": "throughput",
        "jaxperf_repeat": 5,
    }
    ini = {
        "jaxperf_budget": "4",
        "jaxperf_threshold": "0.3",
        "jaxperf_mode": "latency",
        "jaxperf_repeat": "7",
    }
    settings = settings_from(tmp_path, given, **ini)
    assert (settings.budget_seconds, settings.threshold, settings.mode, settings.repeat) == (
        0.5,
        0.2,
        "throughput",
        5,
    )
    settings = settings_from(tmp_path, **ini)
    assert (settings.budget_seconds, settings.threshold, settings.mode, settings.repeat) == (
        4.0,
        0.3,
        "latency",
        7,
    )
    assert settings_from(tmp_path, {"jaxperf_json": ""}, jaxperf_json="ini.json").json_path == Path(
        tmp_path, "here", "ini.json"
    )


def test_flags_and_what_they_imply(tmp_path: Path) -> None:
    assert settings_from(tmp_path, jaxperf=True).measure
    assert settings_from(tmp_path, jaxperf_explain=True).explain
    assert settings_from(tmp_path, {"jaxperf_explain": True}).explain
    assert settings_from(tmp_path, jaxperf_allow_nan=True).allow_nan
    extended = settings_from(tmp_path, {"jaxperf_extend_baselines": True})
    assert (extended.extend_baselines, extended.update_baselines, extended.measure) == (True, True, True)
    updated = settings_from(tmp_path, {"jaxperf_update_baselines": True})
    assert (updated.extend_baselines, updated.update_baselines, updated.measure) == (False, True, True)
    assert settings_from(tmp_path) == PluginSettings(
        baselines_dir=tmp_path / "root" / "baselines", rootdir=tmp_path / "root"
    )


def test_paths_are_relative_to_the_invocation_folder_and_baselines_to_the_rootdir(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path, {"jaxperf_profile": "traces"}, jaxperf_markdown="summary.md", jaxperf_baselines="stored"
    )
    assert settings.profile_dir == tmp_path / "here" / "traces"
    assert settings.markdown_path == tmp_path / "here" / "summary.md"
    assert settings.baselines_dir == tmp_path / "root" / "stored"
    assert settings.json_path is None


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ({"jaxperf_budget": "x"}, "jaxperf_budget: expected a positive number, got 'x'"),
        ({"jaxperf_ci_target": "2"}, "jaxperf_ci_target: expected a fraction such as 0.1 (10%), got '2'"),
        ({"jaxperf_mode": "fast"}, "jaxperf_mode: unknown timing mode 'fast'; accepted: latency, throughput"),
        ({"jaxperf_program_limit": "lots"}, "jaxperf_program_limit: cannot read 'lots' as a size"),
        # Of several bad values, the first field's is reported: budget_seconds comes before repeat.
        ({"jaxperf_repeat": "0", "jaxperf_budget": "-1"}, "jaxperf_budget: expected a positive number"),
    ],
)
def test_a_bad_ini_value_is_named(tmp_path: Path, ini: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        settings_from(tmp_path, **ini)


def test_a_baselines_file_is_named_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stored.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^'stored.json' is a file, not a directory of baselines$"):
        settings_from(tmp_path, jaxperf_baselines="stored.json")


def test_a_setting_without_a_field_is_left_to_the_plugin() -> None:
    cpu_devices = BY_KEY["jaxperf_cpu_devices"]
    assert cpu_devices.field is None
    assert cpu_devices.initial is None
    assert cpu_devices.option_arguments(lambda parse: parse)["type"](" 4") == 4


def test_settings_import_neither_jax_nor_numpy_nor_pytest() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pytest_jaxperf.settings
        heavy = [m for m in ("jax", "numpy", "pytest") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_table_is_frozen() -> None:
    setting: Setting = SETTINGS[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cast("Any", setting).key = "other"
