"""Configuration and command line: bad input is exit 2 with one line naming the culprit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from station.cli import main
from station.config import load_config
from station.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "station.example.yaml"
ENV = {"BORNE_MQTT_PASSWORD": "x", "HA_TOKEN": "t", "BORNE_CARD_KEY": "k"}


def test_example_config_is_valid_and_documents_every_key() -> None:
    config = load_config(EXAMPLE, env=ENV)
    assert config.station.id == "hede" and config.bays[0].plug.profile == "simulator"
    text = EXAMPLE.read_text()

    def keys(model: type) -> set[str]:
        out: set[str] = set()
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            out.add(name)
            for sub in getattr(field.annotation, "__args__", (field.annotation,)):
                if hasattr(sub, "model_fields"):
                    out |= keys(sub)
        return out

    from station.config import Config

    missing = sorted(k for k in keys(Config) if f"{k}:" not in text)
    assert not missing, f"keys not documented in the example: {missing}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("station: {id: x, name: y}\ndata_dir: d\nbays: [{id: '1', vehicle: a}]\ncentral: {card_key: k}\ncolour: red\n",
         "colour: unknown key"),
        ("station: {id: x, name: y}\ndata_dir: d\nbays: [{id: '1', vehicle: a, plug: {transport: tcp}}]\ncentral: {card_key: k}\n",
         "bays[0].plug: Value error, transport tcp needs 'host'"),
        ("station: {id: x, name: y}\ndata_dir: d\nbays: [{id: '1', vehicle: a}]\ncentral: {card_key: k}\npolicy: {standby_w: lots}\n",
         "policy.standby_w:"),
        ("station: {id: x}\ndata_dir: d\nbays: [{id: '1', vehicle: a}]\ncentral: {card_key: k}\n", "station.name: required key is missing"),
        ("station: {id: x, name: y}\ndata_dir: d\nbays: [{id: '1', vehicle: a}]\ncentral: {card_key: '${NOPE_NOT_SET}'}\n",
         "central.card_key: environment variable NOPE_NOT_SET is not set"),
        ("station: [unclosed\n", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_cli_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.update(ENV)
    assert main(["check-config", "-c", str(EXAMPLE)]) == 0
    assert main(["check-config", "-c", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.yaml: no such file" in err[0]


def test_cli_unusable_data_dir_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"station: {{id: x, name: y}}\ndata_dir: {blocker}/sub\nbays: [{{id: '1', vehicle: a}}]\n"
                   "central: {card_key: k}\nreader: {device: simulated}\n")
    proc = subprocess.run([sys.executable, "-m", "station.cli", "run", "-c", str(cfg)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("borne:")]
    assert lines and "data_dir" in lines[0] and "Traceback" not in proc.stderr


def test_cli_usage_errors_are_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "station.cli", "run"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--config" in proc.stderr
    help_ = subprocess.run([sys.executable, "-m", "station.cli", "demo", "--help"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert help_.returncode == 0 and "--scenario" in help_.stdout


def test_hash_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-token", "secret"]) == 0
    assert "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" in capsys.readouterr().out


def test_check_config_names_the_bay_of_a_wrong_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("station: {id: x, name: y}\ndata_dir: d\ncentral: {card_key: k}\n"
                   "bays: [{id: '7', vehicle: a, plug: {transport: tcp, host: 127.0.0.1, profile: no-such-plug}}]\n")
    assert main(["check-config", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bays[7].plug.profile" in err and "no-such-plug" in err and len(err.splitlines()) == 1


def test_docker_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BORNE_CARD_KEY", "k")
    assert main(["check-config", "-c", str(ROOT / "docker" / "station.yaml")]) == 0
