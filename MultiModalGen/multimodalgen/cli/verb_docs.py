"""What each verb's `--help` ends with: the files it writes, and how good it is (a headline measured number with the
benchmark and results file that produced it; numbers are copied from those files, never computed here).

`cli.main.build_parser` attaches `epilog(name)` to every verb and uses `HelpFormatter`, which shows each option's
default. The README's per-verb section says the same (tested by Testing/core/test_docs_match_cli.py).
"""

from __future__ import annotations

import argparse
import re

#: verb -> (what it writes, measured headline with its source). Empty headline: the verb computes nothing to score.
VERB_DOCS: dict[str, tuple[str, str]] = {
    "info": ("nothing (prints geometry, orientation, spacing, value range and named segments of any image, 2D "
             "included; --json for JSON)",
             "reader fuzz: 240 of 240 damaged NIfTI/NRRD/MHA/.seg.nrrd/DICOM files read or refused in one line "
             "(benchmarks/io/fuzz_readers.py --cases 40, run by Testing/verbs/test_data_safety.py)"),
    "convert": ("OUTPUT (format from its name; label maps keep values and a NAME.labels.json sidecar)",
                "reader fuzz: 240 of 240 damaged files read or refused in one line (benchmarks/io/fuzz_readers.py)"),
    "register": ("into --out-dir, chosen with --outputs (default all but displacement): transform.h5 (ITK, LPS, "
                 "fixed->moving), inverse_transform.h5, warped.nii.gz, warped_labels.nii.gz (with --moving-labels), "
                 "report.json, overlay.png; displacement.nii.gz on request",
                 "dev set, 4 MR cases, 2 shared CPU cores: mean Dice .842, TRE 2.06 mm, no folding; ANTs SyN .727 / "
                 "3.56 mm, ConvexAdam .834 / 2.14 mm; whole command 5.6-7.1 s per case vs ANTs SyN 12.4-13.9 s in the "
                 "same runs (1.9-2.5x); with the MI check of the linear stage 6.2-6.5 s vs 13.6-14.3 s (2.1-2.2x) "
                 "(benchmarks/registration/results/table.md)"),
    "apply": ("OUT: the moving image (or --labels) resampled onto the reference grid",
              "reproduces register's warped.nii.gz, identical away from the outermost voxels "
              "(Testing/verbs/test_registration_outputs.py)"),
    "fewshot": ("OUT: the label map (+ NAME.labels.json beside it, NAME = OUT without its extension); "
                "--save-task T: the task folder",
                "12 AAL structures on Colin27, Dice on the unpainted slices K=1/3/5: .649/.789/.839 vs best "
                "baseline .670 (ANTs atlas)/.732/.838 (fill between slices) (benchmarks/fewshot/RESULTS.md)"),
    "segment": ("OUT: the label map with named, coloured, SNOMED-coded segments (+ NAME.labels.json); "
                "--probabilities: NAME.probabilities.nii.gz",
                "personalized-v10 with the default intensity refinement and CSF shell, real heads (SPM oldnorm), "
                "mean Dice grey/white/CSF over 7 modality subsets .632 (worst .568) vs .620 (.560) for "
                "personalized-v9; k-means with an oracle brain mask .652, inside the model's own brain mask .529 "
                "(benchmarks/personalized/results/real_heads_2026-12-06_v10-fair-kmeans.txt); Colin27 grey matter "
                ".755; 1 mm T1 in 16 s on 2 CPU threads, 1.2 GB peak "
                "(benchmarks/personalized/results/real_heads_2026-12-06_p-single-candidate.txt) — accuracy on real "
                "heads is still low (benchmarks/personalized/results/real_heads_2026-12-06_v10.txt): SPM's tissue "
                "map alone, with no image, scores .701 there and Colin27 grey matter .757 "
                "(benchmarks/personalized/results/real_heads_2026-12-06_p-single-20-candidate.txt); with that map "
                "as --atlas (placed by affine registration, weight 4): oldnorm .739 (worst .715), avg152 .755, "
                "Colin27 grey matter .799, rotated/cropped/2x2x6 mm .720/.718/.721 (the atlas with the intensity "
                "EM and no network .694, Colin27 .779), 1 mm T1 in 22 s, 1.5 GB "
                "(benchmarks/personalized/results/real_heads_2026-12-06_atlas-w4.txt)"),
    "finetune": ("OUT: the adapter folder (a name alone: into the user adapter folder)",
                 "MoR adapter fine-tuned on avg152 in 99 s (2 CPU threads; target 300 s), 87 kB: mean Dice .638 on "
                 "SPM oldnorm vs .632 for its base model personalized-v10, but T1 alone drops (.583 -> .522) "
                 "(benchmarks/personalized/results/real_heads_2026-12-06_v10.txt)"),
    "features": ("OUT: the 16-channel encoder feature map on the image's grid",
                 "encoder-v2: cross-contrast voxel matching .842 (avg152) / .692 (oldnorm) vs MIND-SSC .374 / "
                 ".260; 128^3 in 1.6 s on 2 cores (benchmarks/encoder/results/table.md)"),
    "pretrain": ("into --out: last.pt (checkpoint), config.json, train_log.jsonl",
                 "encoder-v2 took 5.7K steps (CPU, then 1000 on an H200); see "
                 "MultiModalGen/Resources/Models/encoder-v2/MODEL_CARD.md"),
    "batch": ("into --out-dir: one folder per study with the task's files and status.json; summary.csv",
              "no stored throughput result: measure it with benchmarks/batch/bench_throughput.py"),
    "demo": ("into --out-dir: every engine's results on the shipped sample data, PNG figures, summary.json", ""),
    "models": ("nothing (lists shipped models and user adapters)", ""),
    "serve": ("nothing locally (an HTTP server; job folders under --workdir are deleted when done)", ""),
}


def readme_table() -> str:
    """The README's "What each verb gives you" table (Markdown), one row per verb of `VERB_DOCS`."""
    rows = ["| verb | writes | how good (measured; source) |", "|---|---|---|"]
    rows += [f"| `{verb}` | {outputs} | {measured or '-'} |" for verb, (outputs, measured) in VERB_DOCS.items()]
    return "\n".join(rows)


def epilog(verb: str) -> str | None:
    """The `--help` epilog of `verb`: "Outputs: ..." and "Measured: ..." lines (None for an undocumented verb)."""
    if verb not in VERB_DOCS:
        return None
    outputs, measured = VERB_DOCS[verb]
    return f"Outputs: {outputs}." + (f"\nMeasured: {measured}." if measured else "")


class HelpFormatter(argparse.HelpFormatter):
    """argparse help that (1) keeps the line structure of descriptions and epilogs (each line wrapped on its own,
    its leading spaces kept) and (2) appends "(default: X)" to an option whose help does not mention its default."""

    def _fill_text(self, text, width, indent):
        import textwrap

        out = []
        for paragraph in re.split(r"\n\s*\n", text.strip("\n")):
            lines = paragraph.splitlines()
            if len(lines) > 1 and not any(line[:1].isspace() for line in lines) and not paragraph.startswith(
                    ("Outputs:", "Measured:")):
                lines = [" ".join(line.strip() for line in lines)]  # a prose paragraph: one line, re-wrapped
            for line in lines:
                lead = line[:len(line) - len(line.lstrip())]
                out.append(textwrap.fill(line.strip(), width, initial_indent=indent + lead,
                                         subsequent_indent=indent + lead + "  "))
            out.append("")
        return "\n".join(out).rstrip("\n")

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False or default == []
                or default is argparse.SUPPRESS or action.option_strings == [] or action.nargs == 0
                and default is not True):
            return text
        return f"{text} (default: %(default)s)"
