"""The README and the command line agree: every `multimodalgen ...` line of the README's code blocks names a verb
and options that the verb's `--help` lists; the modality names the README promises are accepted; every option has
help text and shows its default; each verb's `--help` ends with its outputs and a measured number, as the README's
table says."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest

from multimodalgen.cli.main import build_parser, main, verb_parsers

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GLOBAL_WITH_VALUE = {"--device", "--threads", "--progress"}
GLOBAL_FLAGS = {"--debug", "--version"}


def readme_commands() -> list[str]:
    """Every `multimodalgen ...` command of the README's fenced code blocks, continuation lines joined."""
    commands: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S):
        continues = False  # the previous line was a multimodalgen command
        for line in block.splitlines():
            text = line.split("#", 1)[0].rstrip()
            if text.lstrip().startswith("multimodalgen "):
                commands.append(text.strip())
                continues = True
            elif continues and text.startswith(" ") and text.strip().startswith(("[", "--")):
                commands[-1] += " " + text.strip()
            else:
                continues = False
    return commands


def verb_and_options(command: str) -> tuple[str, list[str]]:
    tokens = shlex.split(command.replace("|", " "), posix=True)[1:]
    while tokens and tokens[0] in GLOBAL_WITH_VALUE | GLOBAL_FLAGS:
        tokens = tokens[2:] if tokens[0] in GLOBAL_WITH_VALUE else tokens[1:]
    verb = tokens[0]
    if verb == "models" and len(tokens) > 1 and not tokens[1].startswith("-"):
        verb = f"models {tokens[1]}"
    # options after the verb are the verb's (a global option there would be an error, so it is checked too)
    options = sorted({m for t in tokens[1:] for m in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", t)})
    return verb, options


def help_text(verb: str, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*verb.split(), "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


COMMANDS = readme_commands()


def test_readme_has_commands_for_every_verb():
    verbs = {verb_and_options(c)[0] for c in COMMANDS}
    parser_verbs = {name for name in verb_parsers(build_parser()) if " " not in name}
    assert len(COMMANDS) >= 20
    assert parser_verbs - {v.split()[0] for v in verbs} == set(), "verbs without a README command line"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_help_and_lists_its_options(command, capsys):
    verb, options = verb_and_options(command)
    text = help_text(verb, capsys)
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]
    assert not missing, f"README `{command}`: `multimodalgen {verb} --help` has no {missing}"


def _documented_actions():
    for name, parser in verb_parsers(build_parser()).items():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            yield name, parser, action


def test_every_option_has_help_and_shows_its_default():
    for name, parser, action in _documented_actions():
        assert action.help and len(action.help) > 8, f"{name} {action.option_strings or action.dest}: no help"
        has_default = action.default not in (None, False, [], argparse.SUPPRESS) and action.option_strings
        if has_default:
            formatted = parser.formatter_class(parser.prog)._get_help_string(action) % {
                "default": action.default, "prog": parser.prog, "choices": action.choices, "dest": action.dest,
                "metavar": action.metavar, "type": action.type}
            assert "default" in formatted.lower(), f"{name} {action.option_strings}: default not shown"


def test_issue_examples_of_help(capsys):
    seg = help_text("segment", capsys)
    assert "Segment a patient's head" in seg and "(default: 0)" in seg  # description; --ttp-steps default
    few = help_text("fewshot", capsys)
    assert re.search(r"--seed SEED\s+random seed", few)
    encoder = " ".join(re.search(r"--encoder \{auto,on,off\}\s+(.*?)\n  --", few, re.S).group(1).split())
    assert "off (default" in encoder and encoder.count("default") == 1


def test_every_verb_help_lists_outputs_and_a_measured_source(capsys):
    from multimodalgen.cli.verb_docs import VERB_DOCS

    for verb in (name for name in verb_parsers(build_parser()) if " " not in name):
        assert verb in VERB_DOCS, f"{verb}: no outputs/measured entry in cli/verb_docs.py"
        text = " ".join(help_text(verb, capsys).split())
        assert "Outputs: " in text, verb
        outputs, measured = VERB_DOCS[verb]
        if measured:
            assert "Measured: " in text, verb
            sources = re.findall(r"(benchmarks/[\w./-]+|Testing/[\w./-]+|MultiModalGen/[\w./-]+)", measured)
            assert sources, f"{verb}: the measured number names no benchmark"
            for source in sources:
                path = ROOT / source.rstrip(".")
                assert path.exists(), f"{verb}: {source} does not exist"


def test_measured_numbers_come_from_their_results_files():
    """The headline numbers quoted in --help are present in the results files they cite."""
    from multimodalgen.cli.verb_docs import VERB_DOCS

    v10 = "benchmarks/personalized/results/real_heads_2026-12-06_v10.txt"
    checks = [("register", "benchmarks/registration/results/table.md", ["0.842", "2.059", "0.727", "3.558"]),
              ("fewshot", "benchmarks/fewshot/RESULTS.md", ["0.649", "0.789", "0.839", "0.670", "0.732", "0.838"]),
              ("segment", v10, ["0.632   0.568", "0.620   0.560", "0.652", "GM Dice 0.755"]),
              ("segment", "benchmarks/personalized/results/real_heads_2026-12-06_v10-fair-kmeans.txt",
               ["0.632   0.568", "0.529   0.450"]),
              ("segment", "benchmarks/personalized/results/real_heads_2026-12-06_p-single-candidate.txt",
               ["personalized-v10 16.1 s 1.23 GB"]),
              ("segment", "benchmarks/personalized/results/real_heads_2026-12-06_p-single-20-candidate.txt",
               ["TPM atlas (no image)", "0.701   0.701", "GM Dice 0.757"]),
              ("segment", "benchmarks/personalized/results/real_heads_2026-12-06_atlas-w4.txt",
               ["0.739   0.715", "0.755   0.738", "GM Dice 0.799", "rotated 15/15 deg: 0.720",
                "(upper 60 %): 0.718", "2x2x6 mm: 0.721", "22.1 s, peak RSS 1.45 GB",
                "0.694   0.671", "GM Dice 0.779"]),
              ("finetune", v10, ["99.1 s, 87 kB", "0.638", "0.632", "0.583", "0.522"]),
              ("features", "benchmarks/encoder/results/table.md", ["0.842", "0.692", "0.374", "0.260", "1.636"])]
    for verb, source, numbers in checks:
        assert source in VERB_DOCS[verb][1]
        text = (ROOT / source).read_text()
        for number in numbers:
            assert number in text, f"{verb}: {number} not in {source}"


def test_readme_table_is_the_help_table():
    from multimodalgen.cli.verb_docs import readme_table

    assert readme_table() in README, "README's 'What each verb gives you' table differs: paste readme_table()"


def _modality_list(sentence_start: str) -> list[str]:
    match = re.search(re.escape(sentence_start) + r"[^:]*:\s*([A-Z0-9, ]+?)\s*[(.]", README.replace("\n", " "))
    assert match, f"README has no line starting {sentence_start!r}"
    return [m.strip() for m in match.group(1).split(",") if m.strip()]


def test_readme_segment_modalities_are_those_of_the_shipped_model():
    from multimodalgen.errors import UserInputError
    from multimodalgen.personalized.prepare import check_modalities

    from multimodalgen.models.registry import DEFAULT_MODELS

    default = DEFAULT_MODELS["personalized"]
    config = json.loads((ROOT / f"MultiModalGen/Resources/Models/{default}/config.json").read_text())
    known = tuple(config["model"]["modalities"])
    listed = _modality_list("Modalities accepted by `segment`")
    assert listed == list(known)
    check_modalities(listed, known)  # every listed name accepted
    for refused in {"FLAIR", "CT", "PET"} - set(listed):
        with pytest.raises(UserInputError, match="unknown modality"):
            check_modalities([refused], known)
    batch_row = re.search(r"\| `segment` \| `study_id,([A-Z0-9,]+)`", README).group(1).split(",")
    assert set(batch_row) <= set(known), f"README batch segment columns {batch_row} not all known to the model"


def test_readme_engine_modalities_are_accepted(tmp_path):
    from multimodalgen.fewshot.cli import parse_image_args
    from multimodalgen.volume import KNOWN_MODALITIES

    listed = _modality_list("Modalities accepted by `register`, `features` and `fewshot`")
    assert {"T1", "CT", "PET", "FLAIR"} <= set(listed)
    image = tmp_path / "x.nii.gz"
    image.write_bytes(b"x")
    for name in listed:
        assert name in KNOWN_MODALITIES
        assert parse_image_args([f"{name}={image}"], "--image") == [(name, str(image))]
