from __future__ import annotations

import gc
import re
import subprocess
import sys
from pathlib import Path

import pytest

from forecaster import config
from forecaster.cli import main

REPO = Path(__file__).resolve().parent.parent


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Configuration.*?```yaml\n(.*?)```", text, re.S)
    assert block is not None
    return block.group(1)


def test_readme_example_is_the_shipped_example_and_is_valid(tmp_path, capsys):
    shipped = (REPO / "examples" / "forecaster.yml").read_text()
    assert config.parse(__import__("yaml").safe_load(_readme_example())) == config.load(
        REPO / "examples/forecaster.yml"
    )
    assert _readme_example().strip() in shipped
    path = tmp_path / "readme.yml"
    path.write_text(_readme_example())
    assert main(["check", "-c", str(path)]) == 0
    assert "valid, 1 forecast(s): http_requests" in capsys.readouterr().out


def test_check_names_every_problem_and_exits_2(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        "prometheus: {timeout: 30s}\n"
        "forecasts:\n"
        "  - {name: ok, query: up}\n"
        "  - {name: broken, query: up, horizon: 1x}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "forecaster", "check", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "prometheus.url: required" in result.stderr
    assert "forecasts[1].horizon: '1x' is not a duration" in result.stderr


def test_check_missing_file_exits_2(tmp_path, capsys):
    assert main(["check", "-c", str(tmp_path / "nope.yml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_forecast_unknown_name_is_a_config_error(tmp_path, capsys, fmt):
    path = tmp_path / "c.yml"
    path.write_text("prometheus: {url: http://127.0.0.1:1}\nforecasts: [{name: a, query: up}]\n")
    assert main(["forecast", "-c", str(path), "--name", "b", "--format", fmt]) == 2
    assert "no forecast named 'b'" in capsys.readouterr().err


def test_garbage_collection_is_back_on_after_a_command_that_stopped_early(tmp_path):
    # The command holds collection off while it imports; one that ends before building its service must not leave
    # it off in the process that called it.
    path = tmp_path / "c.yml"
    path.write_text("prometheus: {url: http://127.0.0.1:1}\nforecasts: [{name: a, query: up}]\n")
    assert main(["forecast", "-c", str(path), "--name", "b"]) == 2
    assert main(["check", "-c", str(tmp_path / "nope.yml")]) == 2
    assert gc.isenabled()


@pytest.mark.parametrize("command", ["run", "forecast"])
def test_a_shard_that_cannot_exist_exits_2_before_anything_starts(tmp_path, capsys, command):
    path = tmp_path / "c.yml"
    path.write_text(
        f"prometheus: {{url: http://127.0.0.1:1}}\nstate_dir: {tmp_path / 'state'}\n"
        "forecasts: [{name: a, query: up}]\n"
    )
    assert main([command, "-c", str(path), "--shard", "2/2"]) == 2
    assert "--shard: shard 2/2: the index must be 0 to count-1" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_rules_prints_the_shipped_recording_rules_for_the_compose_config(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["rules", "-c", "examples/compose-forecaster.yml"]) == 0
    assert capsys.readouterr().out == (REPO / "rules" / "forecast-actuals.yml").read_text()


def test_backtest_plot_without_the_plot_extra_exits_2_naming_it_before_any_query(tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.yml"
    path.write_text("prometheus: {url: http://127.0.0.1:1, retries: 0}\nforecasts: [{name: a, query: up}]\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra sees
    assert main(["backtest", "-c", str(path), "--plot", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'forecaster[plot]'" in err and "matplotlib" in err
    assert "query" not in err  # refused before Prometheus was asked anything


@pytest.mark.integration
def test_a_second_service_on_a_state_dir_in_use_exits_2_naming_it(tmp_path):
    import socket

    import httpx

    from tests.helpers import wait_for

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "c.yml"
    path.write_text(
        f"prometheus: {{url: http://127.0.0.1:1}}\nstate_dir: {tmp_path / 'state'}\nworkers: 0\n"
        "forecasts: [{name: a, query: up}]\n"
    )
    command = [sys.executable, "-m", "forecaster"]
    first = subprocess.Popen([*command, "run", "-c", str(path), "--listen", f"127.0.0.1:{port}"])
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200, 30, "readyz")
        for second in (["run", "-c", str(path), "--listen", "127.0.0.1:0"], ["forecast", "-c", str(path)]):
            result = subprocess.run([*command, *second], capture_output=True, text=True, timeout=60)
            assert result.returncode == 2
            assert f"state_dir {tmp_path / 'state'} is in use by another forecaster (PID {first.pid})" in result.stderr
    finally:
        first.terminate()
        assert first.wait(30) == 0
