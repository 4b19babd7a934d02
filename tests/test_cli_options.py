"""The options of hcl-live, hcl-annotate and hcl-replay refuse nonsense as they are parsed:
exit status 2, argparse's usage line and a message naming the option and what to give,
never a traceback and never a model loaded first."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

from realtime.app.annotate import annotate_main
from realtime.app.live import live_main
from realtime.app.options import MAX_SESSIONS, annotate_parser, live_parser, replay_parser, scorer_bytes_per_session
from realtime.app.replay import replay_main


def _refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" in err, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--device", "bogus"], "argument --device: 'bogus' is not a device: choose auto, cpu, cuda or cuda:N"),
    (["--max-sessions", "0"], "argument --max-sessions: 0: give 1 or more"),
    (["--max-sessions", "-3"], "argument --max-sessions: -3: give 1 or more"),
    (["--max-sessions", "many"], "argument --max-sessions: 'many' is not a whole number"),
    (["--port", "-1"], "argument --port: -1 is not a port: give 1 to 65535, or 0 for any free port"),
    (["--port", "70000"], "argument --port: 70000 is not a port"),
    (["--ray", "--ray-address", " "], "argument --ray-address: is empty"),
])
def test_hcl_live_refuses_nonsense_options(argv, message, capsys):
    assert message in _refused(live_main, argv, capsys)


def test_hcl_live_refuses_a_huge_max_sessions_naming_the_memory_it_would_reserve(capsys):
    err = _refused(live_main, ["--max-sessions", "1000000000"], capsys)
    # the scorer's input rows of one session at the default sizes: float32 text (50 x 384),
    # audio (8 x 48) and video (8 x 58) features plus a mask byte per position
    assert scorer_bytes_per_session() == 4 * (50 * 384 + 8 * 48 + 8 * 58) + (50 + 8 + 8)
    assert f"at most {MAX_SESSIONS}" in err and "80.3 TB of scorer buffers" in err and "--ray" in err, err
    assert "8.03 GB" in _refused(live_main, ["--max-sessions", "100000"], capsys)
    assert live_parser().parse_args(["--max-sessions", str(MAX_SESSIONS)]).max_sessions == MAX_SESSIONS


def test_good_values_still_parse():
    args = live_parser().parse_args(["--device", "CUDA:1", "--port", "0", "--max-sessions", "8"])
    assert (args.device, args.port, args.max_sessions) == ("cuda:1", 0, 8)
    assert live_parser().parse_args([]).device == "auto"
    args = annotate_parser().parse_args(["a.mp4", "-o", "out", "--ray", "--ray-workers", "3", "--device", "cpu"])
    assert (args.ray_workers, args.device) == (3, "cpu")
    assert replay_parser().parse_args(["rec", "--port", "65535"]).port == 65535


@pytest.mark.parametrize("argv, message", [
    (["a.mp4", "-o", "out", "--ray-workers", "0"], "argument --ray-workers: 0: give 1 or more"),
    (["a.mp4", "-o", "out", "--ray", "--ray-workers", "-2"], "argument --ray-workers: -2: give 1 or more"),
    (["a.mp4", "-o", "out", "--ray-address", ""], "argument --ray-address: is empty"),
    (["a.mp4", "-o", "out", "--device", "gpu"], "argument --device: 'gpu' is not a device"),
])
def test_hcl_annotate_refuses_nonsense_options(argv, message, capsys):
    assert message in _refused(annotate_main, argv, capsys)


def test_hcl_replay_refuses_a_port_that_is_not_one(capsys):
    assert "argument --port: 99999 is not a port" in _refused(replay_main, ["rec", "--port", "99999"], capsys)


def _script(name: str) -> list[str]:
    script = shutil.which(name, path=str(pathlib.Path(sys.executable).parent))
    if script is None:
        pytest.skip(f"the {name} script is not installed (pip install -e .)")
    return [script]


@pytest.mark.parametrize("command, argv, message", [
    ("hcl-live", ["--device", "bogus"], "hcl-live: error: argument --device: 'bogus' is not a device: choose auto, cpu, cuda"),
    ("hcl-live", ["--max-sessions", "1000000000"], "it would reserve 80.3 TB of scorer buffers"),
    ("hcl-annotate", ["clip.mp4", "-o", "out", "--ray-workers", "0"], "hcl-annotate: error: argument --ray-workers: 0: give 1 or more"),
])
def test_the_installed_commands_exit_2_with_the_message(command, argv, message, tmp_path):
    done = subprocess.run(_script(command) + argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
