"""Diagrams of a processor's plan: Mermaid and Graphviz DOT."""

from __future__ import annotations

import enum
import re
import shutil
import subprocess
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from sdax import AsyncDagTaskProcessor, AsyncTask, AsyncTaskProcessor, join, task_func


async def nothing(ctx: object) -> None:
    pass


def quick_start() -> AsyncDagTaskProcessor[Any]:
    """The graph of README.md's quick start."""
    return (
        AsyncDagTaskProcessor[Any]
        .builder()
        .add_task(
            AsyncTask("Database", pre_execute=task_func(nothing), post_execute=task_func(nothing))
        )
        .add_task(AsyncTask("Auth", pre_execute=task_func(nothing)), depends_on=("Database",))
        .add_task(AsyncTask("Flags", pre_execute=task_func(nothing)), depends_on=("Database",))
        .add_task(AsyncTask("Fetch", execute=task_func(nothing)), depends_on=("Auth", "Flags"))
        .build()
    )


QUICK_START_MERMAID = """\
flowchart TD
    subgraph wave0 ["wave 0"]
        n0["Database<br/>pre · post"]
    end
    subgraph wave1 ["wave 1"]
        n1["Auth<br/>pre"]
        n2["Flags<br/>pre"]
    end
    n3["Fetch<br/>execute"]
    n0 --> n1
    n0 --> n2
    n1 --> n3
    n2 --> n3
"""


def check_with_graphviz(dot: str) -> None:
    """Render with `dot -Tsvg` when Graphviz is installed; a syntax error fails the test."""
    binary = shutil.which("dot")
    if binary is None:
        return
    result = subprocess.run(
        [binary, "-Tsvg"], input=dot.encode(), capture_output=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"<svg" in result.stdout


def mermaid_labels(text: str) -> dict[str, str]:
    """Node id -> quoted label, for every node line of a Mermaid flowchart."""
    return dict(re.findall(r'^\s*(n\d+)(?:\[|\(\()"([^"]*)"', text, re.MULTILINE))


def test_the_quick_start_graph_renders_as_the_expected_mermaid_flowchart() -> None:
    assert quick_start().to_mermaid() == QUICK_START_MERMAID


def test_the_readme_shows_the_quick_start_diagram_the_code_produces() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{QUICK_START_MERMAID}```" in readme


def test_the_quick_start_graph_renders_as_a_dot_digraph_with_waves_as_clusters() -> None:
    dot = quick_start().to_dot()
    assert dot.startswith("digraph sdax {\n")
    assert dot.endswith("}\n")
    assert dot.count("{") == dot.count("}")
    for line in [
        'n0 [label="Database\\npre · post"];',
        'n1 [label="Auth\\npre"];',
        'n2 [label="Flags\\npre"];',
        'n3 [label="Fetch\\nexecute"];',
        "n0 -> n1;",
        "n0 -> n2;",
        "n1 -> n3;",
        "n2 -> n3;",
        'label="wave 0";',
        'label="wave 1";',
    ]:
        assert f"    {line}\n" in dot
    wave1 = dot[dot.index("subgraph cluster_wave1") :]
    assert wave1.index("n1 [") < wave1.index("}")
    assert wave1.index("n2 [") < wave1.index("}")
    assert dot.index("n3 [") > dot.index("subgraph cluster_wave1")  # no pre: outside the waves
    check_with_graphviz(dot)


def test_diagrams_are_the_same_every_time() -> None:
    assert quick_start().to_mermaid() == quick_start().to_mermaid()
    assert quick_start().to_dot() == quick_start().to_dot()


class Colour(enum.Enum):
    RED = 1


AWKWARD_KEYS: list[Hashable] = [
    'say "hi"',
    ("db", 1),
    42,
    Colour.RED,
    "back\\slash #1 <b>&`x`",
    "end",
    "two\nlines [x] {y} (z)",
]


def awkward() -> AsyncDagTaskProcessor[Any]:
    builder = AsyncDagTaskProcessor[Any].builder()
    previous: tuple[Hashable, ...] = ()
    for key in AWKWARD_KEYS:
        builder.add_task(AsyncTask(key, pre_execute=task_func(nothing)), depends_on=previous)
        previous = (key,)
    return builder.build()


def test_keys_of_any_type_get_index_based_ids_and_escaped_mermaid_labels() -> None:
    text = awkward().to_mermaid()
    labels = mermaid_labels(text)
    assert list(labels) == [f"n{i}" for i in range(len(AWKWARD_KEYS))]
    assert labels["n0"] == "say #quot;hi#quot;<br/>pre"
    assert labels["n1"] == "('db', 1)<br/>pre"
    assert labels["n2"] == "42<br/>pre"
    assert labels["n3"] == "Colour.RED<br/>pre"
    assert labels["n4"] == "back\\slash #35;1 #lt;b#gt;#amp;#96;x#96;<br/>pre"
    assert labels["n6"] == "two lines [x] {y} (z)<br/>pre"
    # Every line is a node, an edge or subgraph syntax: no key leaked outside a label.
    for line in text.splitlines()[1:]:
        line = re.sub(r'"[^"]*"', '""', line.strip())
        assert re.fullmatch(r'n\d+\[""\]|n\d+ --> n\d+|subgraph wave\d+ \[""\]|end', line), line


def test_keys_of_any_type_get_index_based_ids_and_escaped_dot_labels() -> None:
    dot = awkward().to_dot()
    assert 'n0 [label="say \\"hi\\"\\npre"];' in dot
    assert "n1 [label=\"('db', 1)\\npre\"];" in dot
    assert 'n2 [label="42\\npre"];' in dot
    assert 'n4 [label="back\\\\slash #1 <b>&`x`\\npre"];' in dot
    assert 'n6 [label="two\\nlines [x] {y} (z)\\npre"];' in dot
    check_with_graphviz(dot)


def test_a_join_node_is_drawn_as_a_join_outside_the_waves() -> None:
    processor = (
        AsyncDagTaskProcessor[Any]
        .builder()
        .add_task(AsyncTask("A", pre_execute=task_func(nothing)))
        .add_task(AsyncTask("B", pre_execute=task_func(nothing)))
        .add_task(join("Both"), depends_on=("A", "B"))
        .add_task(AsyncTask("C", pre_execute=task_func(nothing)), depends_on=("Both",))
        .build()
    )
    text = processor.to_mermaid()
    assert '    n2(("Both"))\n' in text  # top level, not inside a wave
    for edge in ["n0 --> n2", "n1 --> n2", "n2 --> n3"]:
        assert f"    {edge}\n" in text
    assert '    subgraph wave1 ["wave 1"]\n        n3["C<br/>pre"]\n    end\n' in text
    dot = processor.to_dot()
    assert '    n2 [label="Both", shape=diamond, fontsize=10];\n' in dot
    check_with_graphviz(dot)


def test_a_level_built_processor_draws_its_level_barriers_as_joins() -> None:
    processor = (
        AsyncTaskProcessor[Any]
        .builder()
        .add_task(AsyncTask("A", pre_execute=task_func(nothing)), level=0)
        .add_task(AsyncTask("B", pre_execute=task_func(nothing)), level=1)
        .add_task(AsyncTask("C", execute=task_func(nothing)), level=1)
        .build()
    )
    text = processor.to_mermaid()
    # The barrier's key prints as "<level 0 barrier>": escaped so it is not read as HTML.
    assert re.findall(r"^    n\d+\(\(.*$", text, re.MULTILINE) == [
        '    n1(("#lt;level 0 barrier#gt;"))'
    ]
    for edge in ["n0 --> n1", "n1 --> n2", "n1 --> n3"]:
        assert f"    {edge}\n" in text
    dot = processor.to_dot()
    assert re.findall(r"^    n\d+ .*shape=diamond.*$", dot, re.MULTILINE) == [
        '    n1 [label="<level 0 barrier>", shape=diamond, fontsize=10];'
    ]
    check_with_graphviz(dot)
