"""The mutation report of `make mutation`: mutants per module, and every one that was not killed.

Run from the checkout's root after `mutmut run`: `python scripts/mutation_report.py`. Reads
mutmut's per-file results (mutants/**/*.py.meta, JSON; mutmut 3.8, pinned in constraints.txt)
and prints a Markdown table for docs/testing.md, then one line per surviving mutant: its name
and the line it changed (`mutmut show NAME` prints the whole diff). Exits 1 when more than
MAX_SURVIVING of the checked mutants survived, so the target fails where the tests do not.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

MAX_SURVIVING = 0.20
# mutmut's exit codes (mutmut/stats.py status_by_exit_code); anything else is "other".
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          None: "not checked"}


def changed_line(name: str) -> str:
    """The mutant's changed lines (+), from mutmut's own diff (an internal of mutmut 3.8)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name)
    plus = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and
            not ln.startswith("+++")]
    return " / ".join(plus)


def main() -> int:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results under mutants/: run `mutmut run` first", file=sys.stderr)
        return 2
    rows, survivors = [], []
    totals: Counter[str] = Counter()
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        module = str(meta.relative_to("mutants"))[: -len(".meta")]
        count = Counter(STATUS.get(c, "other") for c in codes.values())
        totals.update(count)
        totals["total"] += len(codes)
        rows.append((module, len(codes), count))
        survivors += sorted((n for n, c in codes.items() if c == 0),
                            key=lambda n: (n.rsplit("_", 1)[0], int(n.rsplit("_", 1)[1])))
    print("| module | mutants | killed | survived | timeout | no tests | not checked |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, n, c in [*rows, ("**all**", totals["total"], totals)]:
        print(f"| {module} | {n} | {c['killed']} | {c['survived']} | {c['timeout']} "
              f"| {c['no tests']} | {c['not checked']} |")
    print()
    for name in survivors:
        print(f"- `{name}`: `{changed_line(name)}`")
    checked = totals["killed"] + totals["survived"] + totals["timeout"]
    share = totals["survived"] / checked if checked else 0.0
    print(f"\nsurvived: {totals['survived']} of {checked} checked ({share:.1%}); "
          f"allowed: {MAX_SURVIVING:.0%}")
    return 1 if share > MAX_SURVIVING else 0


if __name__ == "__main__":
    sys.exit(main())
