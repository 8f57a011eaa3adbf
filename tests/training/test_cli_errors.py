"""Every bad command line is one line: no usage block, no repetition, no silent abbreviation, a
"did you mean" for an unknown flag."""

from __future__ import annotations

import pytest

from backproplab.cli.main import main


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["train", "mlp-numpy", "--learn", "0.5"], "unknown flag --learn; did you mean --learning_rate?"),
        (["train", "mlp-numpy", "--lr", "0.5"], "unknown flag --lr; did you mean --learning_rate?"),
        (
            ["train", "mlp-numpy", "--learning-rate", "1"],
            "unknown flag --learning-rate; did you mean --learning_rate?",
        ),
        (["train", "convnet-numpy", "--max", "3"], "unknown flag --max; did you mean --max_steps?"),
        (["train", "mlp-numpy", "--zzz", "1"], "unknown flag --zzz (see backproplab train mlp-numpy --help)"),
        (
            ["train", "mlp-numpy", "--learning_rate", "x"],
            "argument --learning_rate: expects a float, got 'x'",
        ),
        (["train", "mlp-numpy", "--max_steps", "ten"], "argument --max_steps: expects an int, got 'ten'"),
        (["train", "mlp-numpy", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        (["trian"], "argument COMMAND: invalid choice: 'trian'"),
    ],
)
def test_bad_command_lines_are_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code: object
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors exit through SystemExit
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: backproplab") and err.count("\n") == 1, err
    assert line in err
    assert "usage:" not in err


def test_help_states_each_default_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "mlp-torch", "--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out.split("--data_dir", 1)[1].split("--", 1)[0]
    assert "(default: 0.001)" in out
