"""Which checks of a claims report moved between two runs (a training-seed rerun, another CPU).

Prints, per kind of move ("holds -> within noise", ...), every check that moved, and the number of
checks that went between "holds" and "fails" (the bands promise none). A check is named by its
text with the numbers set aside, so the same check is paired across runs whatever its numbers.

Usage: ``python benchmarks/claims_moves.py REFERENCE/claims.md OTHER/claims.md``
"""

from __future__ import annotations

import re
import sys

DECIMAL = re.compile(r"[-+]?\d+\.\d+")
COUNT = re.compile(r"\d+ of \d+")  # "better at 3 of 4 training budgets": a count, not a name
# each trained model's margin, printed where a check is decided on several: numbers, not a name
PER_CHECKPOINT = re.compile(r" \(per checkpoint: [^)]*\)")
CHECK = re.compile(r"- \*\*(holds|fails|within noise)\*\*: (.*)\[")
VERDICTS = re.compile(r"\| (\d+) \| ([a-z ()]+) \| (\d+ of \d+) \| (\d+) \|")


def checks(path: str) -> dict[tuple[str, str, int], str]:
    """(claim, check text without its numbers, repeat) -> outcome."""
    out: dict[tuple[str, str, int], str] = {}
    claim = None
    for line in open(path, encoding="utf-8"):
        if heading := re.match(r"## Claim (\d+)", line):
            claim = heading.group(1)
        if claim and (check := CHECK.match(line)):
            text = PER_CHECKPOINT.sub("", check.group(2))
            name = COUNT.sub("# of #", DECIMAL.sub("#", text)).strip()
            repeat = sum(1 for key in out if key[:2] == (claim, name))
            out[(claim, name, repeat)] = check.group(1)
    return out


def main(reference: str, other: str) -> None:
    a, b = checks(reference), checks(other)
    moves: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for key in sorted(set(a) | set(b)):
        if a.get(key, "-") != b.get(key, "-"):
            moves.setdefault((a.get(key, "-"), b.get(key, "-")), []).append(key)
    print("| claim | reference | other |\n|---|---|---|")
    verdicts = [
        {m[0]: m[1:] for m in VERDICTS.findall(open(p, encoding="utf-8").read())}
        for p in (reference, other)
    ]
    for claim in sorted(verdicts[0], key=int):
        x, y = verdicts[0][claim], verdicts[1].get(claim, ("-", "-", "-"))
        shown = [f"{v[0]} ({v[1]}, {v[2]} within noise)" for v in (x, y)]
        print(f"| {claim} | {shown[0]} | {shown[1]} |")
    print()
    for (x, y), keys in sorted(moves.items()):
        print(f"{x} -> {y} ({len(keys)}):")
        for claim, name, _ in keys:
            print(f"- claim {claim}: {name}")
    flips = sum(len(k) for (x, y), k in moves.items() if {x, y} == {"holds", "fails"})
    moved = sum(len(k) for k in moves.values())
    print(f"\n{len(a)} checks vs {len(b)}; {moved} moved; between holds and fails: {flips}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
