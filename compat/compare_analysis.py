"""Compare this project's task analysis with sdax 0.7.2's on seeded random graphs.

    python -m compat.compare_analysis [--graphs 400] [--seed 1] [--reference PYTHON]

Each graph is analysed twice by dump_analysis.py: under this interpreter with
this repository's sdax, and under 0.7.2 in its own venv (compat/reference.py).
PRE and POST waves (number, tasks, depends_on_tasks) and every TaskAnalysis
attribute the two share are compared; exit status 1 on any mismatch.
Graphs are declared in shuffled order and mix joins, execute-only,
post-only and three-phase tasks; a few have a cycle or a missing dependency
(only 0.7.2's phrase at the start of the error is compared then). Level-built
graphs compare only what names user tasks: the two adapters add different
join nodes (0.7.2 two per level, this project one between levels), so
`topological_order`, `dependencies`, `total_tasks` and `nodes` differ by design.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from compat.reference import reference_python, run_json

WORKER = Path(__file__).resolve().parent / "dump_analysis.py"
HOWS = ("builder", "analyzer", "builder.taskAnalyzer", "levels")
JOIN_KEYED = ("topological_order", "dependencies", "total_tasks", "nodes")


def issue_example() -> dict[str, Any]:
    """Issue 19's chains A->B->D and C->E->F, every task with a pre and a post."""
    chains = [("A", []), ("B", ["A"]), ("D", ["B"]), ("C", []), ("E", ["C"]), ("F", ["E"])]
    return {
        "how": "builder",
        "tasks": [{"name": n, "phases": "pc", "deps": d} for n, d in chains],
    }


def random_graph(rng: random.Random, how: str, max_tasks: int) -> dict[str, Any]:
    size = rng.randint(1, max_tasks)
    names = [f"t{i:02d}" for i in range(size)]  # in a topological order
    density = rng.uniform(0.05, 0.5)
    weights = {letter: rng.uniform(0.2, 0.9) for letter in "pec"}
    tasks = []
    for position, name in enumerate(names):
        phases = "".join(letter for letter, w in weights.items() if rng.random() < w)
        deps = [earlier for earlier in names[:position] if rng.random() < density]
        rng.shuffle(deps)
        tasks.append({"name": name, "phases": phases, "deps": deps, "level": rng.randint(0, 4)})
    if how != "levels" and size > 1 and rng.random() < 0.03:
        tasks[0]["deps"].append(names[-1])  # a cycle (or a self-dependency)
    elif how != "levels" and rng.random() < 0.03:
        rng.choice(tasks)["deps"].append("nowhere")
    rng.shuffle(tasks)  # declaration order is not topological order
    return {"how": how, "tasks": tasks}


def mismatches(graph: dict[str, Any], ours: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    fields = sorted(set(ours) | set(ref))
    if graph["how"] == "levels":
        fields = [name for name in fields if name not in JOIN_KEYED]
    return [name for name in fields if ours.get(name) != ref.get(name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-tasks", type=int, default=16)
    parser.add_argument("--reference", help="a Python with sdax 0.7.2 (default: made on demand)")
    parser.add_argument("--show", type=int, default=3, help="mismatching graphs to print")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    graphs = [issue_example()] + [
        random_graph(rng, HOWS[i % len(HOWS)], args.max_tasks) for i in range(args.graphs - 1)
    ]
    reference = args.reference or reference_python()
    ours = run_json(sys.executable, WORKER, graphs, ours=True)
    ref = run_json(reference, WORKER, graphs, ours=False)

    by_field: Counter[str] = Counter()
    shown = 0
    bad_graphs = 0
    for graph, mine, theirs in zip(graphs, ours, ref, strict=True):
        wrong = mismatches(graph, mine, theirs)
        by_field.update(wrong)
        if wrong:
            bad_graphs += 1
        if wrong and shown < args.show:
            shown += 1
            print(f"mismatch ({graph['how']}): {', '.join(wrong)}\n  graph: {graph['tasks']}")
            for name in wrong:
                print(f"  {name}:\n    ours: {mine.get(name)}\n    0.7.2: {theirs.get(name)}")
    errors = sum(1 for theirs in ref if "error" in theirs)
    print(
        f"{len(graphs)} graphs (seed {args.seed}; {errors} invalid), {bad_graphs} with a mismatch"
    )
    for name, count in sorted(by_field.items()):
        print(f"  {name}: {count}")
    return 1 if bad_graphs else 0


if __name__ == "__main__":
    sys.exit(main())
