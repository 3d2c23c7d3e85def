"""Print a Markdown table of a run's means beside the study's Table 2 (for the README).

python scripts/readme_table.py runs/tinystories-...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.report.study_table import STUDY_MODELS, STUDY_TABLE2
from harness.terminal_table import STUDY_ORDER, format_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    models = summary["models"]
    seed_index = {name.lower(): i for i, name in enumerate(STUDY_MODELS)}
    head = ["#", "metric"] + [f"{m} (ours)" for m in models] + [f"{m} (seed)" for m in models if m in seed_index]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for i, metric in enumerate(STUDY_ORDER, 1):
        entry = summary["metrics"][metric]
        ours = [format_value(entry["models"][m]["mean"], entry["unit"]) for m in models]
        seed = [format_value(STUDY_TABLE2[metric][seed_index[m]], entry["unit"]) for m in models if m in seed_index]
        print("| " + " | ".join([str(i), metric, *ours, *seed]) + " |")
    for metric in ("heldout_bpb", "eos_rate", "decode_tps"):
        if metric in summary["metrics"]:
            entry = summary["metrics"][metric]
            ours = [format_value((entry["models"].get(m) or {}).get("mean"), entry["unit"]) for m in models]
            print("| " + " | ".join(["", metric, *ours, *["—"] * sum(m in seed_index for m in models)]) + " |")


if __name__ == "__main__":
    main()
