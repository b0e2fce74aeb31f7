"""The plan of a processor as a diagram: Mermaid flowchart or Graphviz DOT.

Both show the same thing: every task with the phases it declares, an arrow
from each dependency to its dependent (the direction PRE flows; POST runs
against the arrows), the PRE waves as groups, and phase-less join nodes as
small round/diamond shapes. Node ids come from node indices (`n0`, `n1`, ...)
so any hashable key is safe; keys appear only in escaped labels. Output is
deterministic: nodes in declaration order, waves in wave order.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from sdax.analysis import TaskAnalysis
from sdax.graph import TaskGraph, TaskNode
from sdax.vocabulary import PhaseId

_PHASE_NAMES = {PhaseId.PRE_EXEC: "pre", PhaseId.EXECUTE: "execute", PhaseId.POST_EXEC: "post"}

# Mermaid decodes `#name;` / `#number;` entities in labels. `#` goes first so the
# entities added after it are not escaped again; `<`, `>` and `&` would otherwise be
# read as HTML, and a backtick could turn the label into a markdown string.
_MERMAID_ESCAPES = str.maketrans(
    {
        "#": "#35;",
        '"': "#quot;",
        "<": "#lt;",
        ">": "#gt;",
        "&": "#amp;",
        "`": "#96;",
        "\n": " ",
        "\r": " ",
    }
)
# In a DOT quoted string only `"` and `\` are special; a newline becomes DOT's `\n`.
_DOT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": ""})


def to_mermaid(graph: TaskGraph, analysis: TaskAnalysis) -> str:
    """A Mermaid `flowchart TD` of `graph`, one PRE wave per subgraph "wave N".

    Tasks without a `pre_execute` sit outside the subgraphs; join nodes are circles.
    """

    def node(task: TaskNode) -> str:
        text = _label(task.key).translate(_MERMAID_ESCAPES)
        if not task.functions:
            return f'n{task.index}(("{text}"))'
        return f'n{task.index}["{text}<br/>{_phases(task)}"]'

    lines = ["flowchart TD"]
    for wave_num, members in _waves(graph, analysis):
        lines.append(f'    subgraph wave{wave_num} ["wave {wave_num}"]')
        lines.extend(f"        {node(graph.nodes[i])}" for i in members)
        lines.append("    end")
    lines.extend(f"    {node(graph.nodes[i])}" for i in _outside_waves(graph))
    lines.extend(f"    n{dep} --> n{i}" for dep, i in _edges(graph))
    return "\n".join(lines) + "\n"


def to_dot(graph: TaskGraph, analysis: TaskAnalysis) -> str:
    """A Graphviz digraph of `graph`, one PRE wave per cluster labelled "wave N".

    Tasks without a `pre_execute` sit outside the clusters; join nodes are
    small diamonds, labelled with their key.
    """

    def node(task: TaskNode) -> str:
        text = _label(task.key).translate(_DOT_ESCAPES)
        if not task.functions:
            return f'n{task.index} [label="{text}", shape=diamond, fontsize=10];'
        return f'n{task.index} [label="{text}\\n{_phases(task)}"];'

    lines = [
        "digraph sdax {",
        "    rankdir=TB;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
    ]
    for wave_num, members in _waves(graph, analysis):
        lines.append(f"    subgraph cluster_wave{wave_num} {{")
        lines.append(f'        label="wave {wave_num}";')
        lines.extend(f"        {node(graph.nodes[i])}" for i in members)
        lines.append("    }")
    lines.extend(f"    {node(graph.nodes[i])}" for i in _outside_waves(graph))
    lines.extend(f"    n{dep} -> n{i};" for dep, i in _edges(graph))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(key: Hashable) -> str:
    # str() keeps plain string keys unquoted; other keys show as they print.
    return str(key)


def _phases(task: TaskNode) -> str:
    return " · ".join(_PHASE_NAMES[phase] for phase in PhaseId if phase in task.functions)


def _waves(graph: TaskGraph, analysis: TaskAnalysis) -> Iterator[tuple[int, list[int]]]:
    """Each PRE wave with its members as node indices, in declaration order."""
    for wave in analysis.pre_execute_graph.waves:
        yield wave.wave_num, sorted(graph.index[key] for key in wave.tasks)


def _outside_waves(graph: TaskGraph) -> list[int]:
    return [i for i, has_pre in enumerate(graph.has_pre) if not has_pre]


def _edges(graph: TaskGraph) -> Iterator[tuple[int, int]]:
    for i, deps in enumerate(graph.dependencies):
        for dep in deps:
            yield dep, i
