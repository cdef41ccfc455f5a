"""One option style for every command-line tool (issue 18, item 5), and the old spellings for one release.

Rule: where a tool mirrors an nnU-Net command, its options are spelled as nnU-Net spells them (checked against the
installed nnU-Net's source); every other long option is kebab-case (``--landmark-threshold``). Options renamed to
that style still parse, with ``<prog>: warning: <old> is deprecated, use <new>`` on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import nnunetv2
import pytest

from nnunet_babloss.command_line import ArgumentParser

TOOLS = {
    "nnUNetv2_bab_convert": "dataset_conversion.cli_convert",
    "nnUNetv2_bab_merge": "dataset_conversion.cli_merge",
    "nnUNetv2_bab_pseudo_labels": "pseudo_labels.cli",
    "nnUNetv2_bab_gaze_pseudo_labels": "pseudo_labels.gaze.cli",
    "nnUNetv2_bab_predict": "nnunet_babloss.cli.predict",
    "nnUNetv2_bab_evaluate": "nnunet_babloss.cli.evaluate",
    "nnUNetv2_bab_demo": "nnunet_babloss.cli.demo",
    "nnUNetv2_bab_trainer_dir": "nnunet_babloss.cli.trainer_dir",
}
# nnU-Net's own spellings that our mirroring tools take over, and the nnU-Net source file that defines each.
NNUNET_SPELLINGS = {
    "inference/predict_from_raw_data.py": (
        "-i", "-o", "-d", "-p", "-tr", "-c", "-f", "-step_size", "--disable_tta", "--verbose", "--save_probabilities",
        "--continue_prediction", "-chk", "-npp", "-nps", "-prev_stage_predictions", "-num_parts", "-part_id",
        "-device", "--disable_progress_bar", "--not_on_device",
    ),
    "evaluation/evaluate_predictions.py": ("-djfile", "-o"),
}
# Short options that mean what they mean in nnU-Net (-i input, -o output, -d dataset id) or are plain one-letter
# shorthands of a kebab-case long option.
KEBAB = re.compile(r"--[a-z0-9]+(-[a-z0-9]+)*")
SHORT = re.compile(r"-[a-z]")
# Minimal valid arguments of the tools whose old spellings are tested.
REQUIRED = {
    "nnUNetv2_bab_predict": ["-i", "in", "-o", "out", "-d", "987", "-c", "2d"],
    "nnUNetv2_bab_evaluate": ["--pred", "pred", "-djfile", "dataset.json"],
}


def _parser(prog: str) -> argparse.ArgumentParser:
    return importlib.import_module(TOOLS[prog]).build_parser()


def _nnunet_spellings() -> set[str]:
    return {option for spellings in NNUNET_SPELLINGS.values() for option in spellings}


def test_nnunet_spellings_are_nnunets() -> None:
    """The allow-list is not ours to invent: every entry is an option of the installed nnU-Net command."""
    root = Path(nnunetv2.__file__).parent
    for relative_path, spellings in NNUNET_SPELLINGS.items():
        source = (root / relative_path).read_text()
        for option in spellings:
            assert f"add_argument('{option}'" in source, (relative_path, option)


@pytest.mark.parametrize("prog", sorted(TOOLS))
def test_every_option_is_nnunets_or_kebab_case(prog: str) -> None:
    offenders = [
        option
        for action in _parser(prog)._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
        and not KEBAB.fullmatch(option)
        and not SHORT.fullmatch(option)
        and option not in _nnunet_spellings()
    ]
    assert offenders == [], f"{prog}: options neither nnU-Net's spelling nor kebab-case: {offenders}"


@pytest.mark.parametrize("prog", sorted(TOOLS))
def test_nnunet_spellings_only_where_the_tool_mirrors_nnunet(prog: str) -> None:
    """A tool of our own does not borrow nnU-Net's snake_case (that was ``--device`` next to ``-device``)."""
    if prog in ("nnUNetv2_bab_predict", "nnUNetv2_bab_evaluate"):
        return
    options = {option for action in _parser(prog)._actions for option in action.option_strings}
    assert {option for option in options if "_" in option} == set()
    assert {option for option in options if re.fullmatch(r"-[a-z]{2,}.*", option)} == set()


def _renames() -> list[tuple[str, str, str]]:
    cases = []
    for prog in REQUIRED:
        module = importlib.import_module(TOOLS[prog])
        cases += [(prog, old, new) for old, new in module.RENAMED_OPTIONS.items()]
    return cases


def _value_for(parser: argparse.ArgumentParser, option: str) -> list[str]:
    action = next(action for action in parser._actions if option in action.option_strings)
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(list(action.choices)[-1])]
    return ["0.5"] if action.type is float else ["some_path"]


@pytest.mark.parametrize(("prog", "old", "new"), _renames(), ids=lambda value: str(value))
def test_old_spelling_still_works_and_warns(
    prog: str, old: str, new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _parser(prog)
    value = _value_for(parser, new)
    with_new = parser.parse_args([*REQUIRED[prog], new, *value])
    assert capsys.readouterr().err == ""
    with_old = parser.parse_args([*REQUIRED[prog], old, *value])
    assert vars(with_old) == vars(with_new)
    assert capsys.readouterr().err == f"{prog}: warning: {old} is deprecated, use {new}\n"
    if value:  # --old=value too
        assert vars(parser.parse_args([*REQUIRED[prog], f"{old}={value[0]}"])) == vars(with_new)
    usage_options = set(re.findall(r"-+[\w-]+", parser.format_usage()))
    assert old not in usage_options and new in usage_options


def test_a_required_option_given_in_its_old_spelling_counts(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser("nnUNetv2_bab_evaluate").parse_args(["-pred", "p", "-djfile", "d"])
    assert args.pred == Path("p")
    assert "-pred is deprecated, use --pred" in capsys.readouterr().err


def test_main_accepts_old_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    """Through ``main`` (what the console scripts run): the old spelling reaches the new option's checks."""
    from nnunet_babloss.cli import predict

    with pytest.raises(SystemExit) as exit_info:
        predict.main([*REQUIRED["nnUNetv2_bab_predict"], "--landmark_threshold", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nnUNetv2_bab_predict: warning: --landmark_threshold is deprecated, use --landmark-threshold" in err
    assert "--landmark-threshold must be in [0, 1], got 2.0" in err


class TestArgumentParser:
    def _parser(self) -> ArgumentParser:
        parser = ArgumentParser(prog="tool", renamed_options={"--old_name": "--new-name", "-flag_x": "--flag-x"})
        parser.add_argument("--new-name", type=int, required=True)
        parser.add_argument("--flag-x", action="store_true")
        parser.add_argument("rest", nargs="*")
        return parser

    def test_rewrites_before_parsing(self, capsys: pytest.CaptureFixture[str]) -> None:
        args = self._parser().parse_args(["--old_name", "3", "-flag_x"])
        assert (args.new_name, args.flag_x) == (3, True)
        assert capsys.readouterr().err.splitlines() == [
            "tool: warning: --old_name is deprecated, use --new-name",
            "tool: warning: -flag_x is deprecated, use --flag-x",
        ]

    def test_leaves_positional_arguments_after_double_dash_alone(self, capsys) -> None:
        args = self._parser().parse_args(["--new-name", "1", "--", "--old_name"])
        assert args.rest == ["--old_name"] and capsys.readouterr().err == ""

    def test_help_names_the_old_spellings_once(self) -> None:
        # argparse wraps at hyphens too: undo the wrapping before looking.
        help_text = " ".join(re.sub(r"-\n\s*", "-", self._parser().format_help()).split())
        assert "--old_name (use --new-name)" in help_text and "-flag_x (use --flag-x)" in help_text

    def test_a_rename_to_an_unknown_option_is_a_bug_of_the_tool(self) -> None:
        parser = ArgumentParser(prog="tool", renamed_options={"--a_b": "--a-c"})
        parser.add_argument("--a-b")
        with pytest.raises(ValueError, match="--a-c"):
            parser.parse_args([])
