"""`prepare-labels`: turn a data folder (laid out like `../shared/data`) into a synth-2 label folder.

    python -m multimodalgen.synthesis.prepare_labels --data ../shared/data --out /path/to/labels

Copies only the licence-cleared label maps (SPM TPM, InVesalius CT masks, pyradiomics lesion masks) and writes
`sources.json` with each file's licence (see `label_sources`). Errors: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from multimodalgen.errors import UserInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multimodalgen.synthesis.prepare_labels",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data folder holding spm_templates/, invesalius_ct_head/, "
                        "pyradiomics_cases/")
    parser.add_argument("--out", required=True, help="label folder to write (created; files replaced atomically)")
    args = parser.parse_args(argv)
    from multimodalgen.synthesis.label_sources import prepare_label_folder

    try:
        record = prepare_label_folder(args.data, args.out)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(f"{name} ({info['licence']})" for name, info in record["files"].items())
    print(f"wrote {len(record['files'])} label maps to {args.out}: {names}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
