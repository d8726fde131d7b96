"""Differential flame graph responses (``/api/diff``, and the tail diff's tree)."""

from __future__ import annotations

from ..analysis.common import classify_file, fraction
from ..analysis.diff import SIDES, Diff, DiffTree, FunctionChange
from .functions import FunctionRows


def diff_tree_json(tree: DiffTree) -> dict:
    """The merged tree in the node format of ``/api/diff``: per node and side, total, self, CPU,
    wait and GIL ns and the share of the side's total; ``delta_ns`` (b minus a) for per-unit trees."""
    functions = FunctionRows(tree.function_table)
    rows = []
    for j, node in enumerate(tree.ids):
        row = {
            "id": node, "parent": tree.parents[j], "fn": functions.local(tree.functions[j]), "kind": tree.kinds[j],
            "depth": tree.depths[j], "folded": tree.folded[j],
        }
        for i, side in enumerate(SIDES):
            row[f"{side}_total_ns"] = tree.total[i][j]
            row[f"{side}_self_ns"] = tree.self[i][j]
            row[f"{side}_cpu_ns"] = tree.cpu[i][j]
            row[f"{side}_wait_ns"] = tree.wait[i][j]
            row[f"{side}_gil_ns"] = tree.gil[i][j]
        a_fraction = fraction(row["a_total_ns"], tree.root_totals[0])
        b_fraction = fraction(row["b_total_ns"], tree.root_totals[1])
        row.update({"a_fraction": a_fraction, "b_fraction": b_fraction, "delta_fraction": round(b_fraction - a_fraction, 9)})
        if tree.per_unit:
            row["delta_ns"] = row["b_total_ns"] - row["a_total_ns"]
        rows.append(row)
    return {
        "a": {"root_total_ns": tree.root_totals[0]},
        "b": {"root_total_ns": tree.root_totals[1]},
        "base": tree.base,
        "min_fraction": tree.min_fraction,
        "effective_min_fraction": round(tree.threshold / tree.root_weight, 9) if tree.root_weight else tree.min_fraction,
        "nodes": rows,
        "functions": functions.rows,
    }


def change_json(change: FunctionChange) -> dict:
    package, origin = classify_file(change.file)
    return {
        "name": change.name, "file": change.file, "line": change.line, "package": package, "origin": origin,
        "a_total_ns": change.a_total_ns, "b_total_ns": change.b_total_ns, "a_self_ns": change.a_self_ns,
        "b_self_ns": change.b_self_ns, "delta_total_fraction": change.delta_total_fraction,
        "delta_self_fraction": change.delta_self_fraction,
    }


def diff_json(diff: Diff) -> dict:
    return {**diff_tree_json(diff.tree), "changes": [change_json(change) for change in diff.changes]}
