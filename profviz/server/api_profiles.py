"""The profile API: list, detail, flamegraph, functions, sandwich, search, timeline and diff.

Every endpoint parses its query with :mod:`profviz.server.params` (bad values -> 400), loads
profiles through the shared LRU and delegates aggregation to :mod:`profviz.analysis` and the JSON to :mod:`profviz.shapes`
(the contract in ``docs/api.md``).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .. import formats
from ..analysis.calltree import ROOT
from ..analysis.diff import diff
from ..analysis.flamegraph import (
    FUNCTION_SORTS,
    AmbiguousFunction,
    compile_query,
    flamegraph,
    search,
    top_functions,
)
from ..analysis.pruning import DEFAULT_MAX_NODES, DEFAULT_MIN_FRACTION
from ..analysis.sandwich import sandwich
from ..analysis.summary import profile_summary
from ..analysis.timeline import MAX_WIDTH, timeline
from ..model import Profile
from ..shapes.diff import diff_json
from ..shapes.flame import flamegraph_json, sandwich_json, search_json, timeline_json, top_functions_json
from ..shapes.profiles import profile_detail_json, profile_entry
from .context import profile_origin_ns, server_context
from .params import (
    bad,
    bool_param,
    choice_param,
    float_param,
    int_param,
    profile_id_param,
    sample_filter,
    threads_param,
)

bp = Blueprint("profiles_api", __name__, url_prefix="/api")
MAX_NODES_LIMIT = 100_000


def _load(profile_id_text: str) -> tuple[int, Profile]:
    profile_id = profile_id_param(profile_id_text)
    return profile_id, server_context().profile(profile_id)


def _tree_limits() -> tuple[float, int]:
    args = request.args
    min_fraction = float_param(args, "min_fraction", DEFAULT_MIN_FRACTION, low=0.0, high=1.0)
    max_nodes = int_param(args, "max_nodes", DEFAULT_MAX_NODES, low=1, high=MAX_NODES_LIMIT)
    return min_fraction, max_nodes


def _answer(profile_id: int, body: dict, filters: dict):
    """A view of one profile: its id, the view's body, and the filters it applied."""
    return jsonify({"profile_id": profile_id, **body, "filters": filters})


@bp.get("/profiles")
def list_profiles():
    args = request.args
    limit = int_param(args, "limit", None, low=1, high=10_000)
    kind = args.get("kind") or None
    metas = server_context().store.list_profiles(kind=kind, limit=limit)
    return jsonify({"profiles": [profile_entry(m) for m in metas]})


def profile_detail(profile_id: int, profile: Profile) -> dict:
    """``GET /api/profiles/<id>``: metadata, per-thread totals by state, time range, wait reasons."""
    meta = server_context().store.profile_meta(profile_id)
    return profile_detail_json(meta, profile, profile_summary(profile), profile_origin_ns(profile))


@bp.get("/profiles/<profile_id>")
def get_profile(profile_id: str):
    pid, profile = _load(profile_id)
    return jsonify(server_context().memo(("detail", pid), lambda: profile_detail(pid, profile)))


@bp.get("/formats")
def export_formats():
    """The formats a profile downloads as: name, description, file extension and what the format drops."""
    return jsonify({"formats": [{"name": fmt.name, "description": fmt.description, "extension": fmt.extension,
                                 "drops": getattr(fmt.module, "DROPS", None)} for fmt in formats.FORMATS if fmt.can_dump]})


@bp.get("/profiles/<profile_id>/export")
def export_profile(profile_id: str):
    """The whole profile as a file in ``format`` (see /api/formats), to download."""
    choices = tuple(formats.names(dumpable=True))
    name = choice_param(request.args, "format", "speedscope", choices)
    profile_id_int, profile = _load(profile_id)
    fmt = formats.format_named(name)
    try:
        data = formats.dump(profile, name)
    except formats.FormatError as exc:  # the profile holds what the format cannot (a pprof period it cannot price, say)
        answer = jsonify({"error": {"status": 422, "message": f"profile {profile_id_int} cannot be written as {name}: {exc}"}})
        answer.status_code = 422
        return answer
    response = Response(data, mimetype="application/octet-stream" if name == "pprof" else "application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="profile-{profile_id_int}{fmt.extension}"'
    return response


@bp.get("/profiles/<profile_id>/flamegraph")
def get_flamegraph(profile_id: str):
    pid, profile = _load(profile_id)
    selection, echo = sample_filter(request.args, profile)
    min_fraction, max_nodes = _tree_limits()
    root = int_param(request.args, "root", ROOT, low=0, high=2**31 - 1)
    body = flamegraph_json(flamegraph(profile, selection, root=root, min_fraction=min_fraction, max_nodes=max_nodes))
    return _answer(pid, body, echo)


@bp.get("/profiles/<profile_id>/functions")
def get_functions(profile_id: str):
    pid, profile = _load(profile_id)
    selection, echo = sample_filter(request.args, profile)
    sort = choice_param(request.args, "sort", "self", FUNCTION_SORTS)
    limit = int_param(request.args, "limit", 200, low=1, high=10_000)
    return _answer(pid, top_functions_json(top_functions(profile, selection, sort=sort, limit=limit)), echo)


@bp.get("/profiles/<profile_id>/sandwich")
def get_sandwich(profile_id: str):
    pid, profile = _load(profile_id)
    selection, echo = sample_filter(request.args, profile)
    min_fraction, max_nodes = _tree_limits()
    function = request.args.get("function")
    if not function:
        raise bad("function", "the function name is required")
    file = request.args.get("file")
    try:
        body = sandwich_json(sandwich(profile, selection, function=function, file=file if file is not None else None,
                                      min_fraction=min_fraction, max_nodes=max_nodes))
    except AmbiguousFunction as exc:
        raise bad("file", str(exc)) from None
    return _answer(pid, body, echo)


@bp.get("/profiles/<profile_id>/search")
def get_search(profile_id: str):
    pid, profile = _load(profile_id)
    selection, echo = sample_filter(request.args, profile)
    min_fraction, max_nodes = _tree_limits()
    query = request.args.get("q", "")
    regex = bool_param(request.args, "regex")
    root = int_param(request.args, "root", ROOT, low=0, high=2**31 - 1)
    try:
        compile_query(query, regex)
    except ValueError as exc:
        raise bad("q", str(exc)) from None
    body = search_json(search(profile, selection, query=query, regex=regex, root=root, min_fraction=min_fraction,
                              max_nodes=max_nodes))
    return _answer(pid, body, echo)


@bp.get("/profiles/<profile_id>/timeline")
def get_timeline(profile_id: str):
    pid, profile = _load(profile_id)
    args = request.args
    threads = threads_param(args, "threads", profile)
    start = int_param(args, "start_ns", None, low=-(2**62), high=2**62)
    end = int_param(args, "end_ns", None, low=-(2**62), high=2**62)
    if start is not None and end is not None and end <= start:
        raise bad("end_ns", f"{end} must be greater than start_ns {start}")
    width = int_param(args, "width", 1000, low=1, high=MAX_WIDTH)
    origin = profile_origin_ns(profile)
    body = timeline_json(timeline(
        profile, threads=threads, width=width, origin_ns=origin,
        start_ns=None if start is None else origin + start, end_ns=None if end is None else origin + end,
    ))
    return jsonify({"profile_id": pid, **body})


@bp.get("/diff")
def get_diff():
    args = request.args
    context = server_context()
    a_id = profile_id_param(args.get("a"), "a")
    b_id = profile_id_param(args.get("b") or args.get("a"), "b")
    profile_a = context.profile(a_id)
    profile_b = context.profile(b_id)
    selection_a, echo_a = sample_filter(args, profile_a, "a_")
    selection_b, echo_b = sample_filter(args, profile_b, "b_")
    base = choice_param(args, "base", "a", ("a", "b"))
    min_fraction, max_nodes = _tree_limits()
    limit = int_param(args, "limit", 50, low=1, high=1000)
    body = diff_json(diff(profile_a, selection_a, profile_b, selection_b, base=base, min_fraction=min_fraction,
                          max_nodes=max_nodes, limit=limit))
    body["a"].update({"profile_id": a_id, "filters": echo_a})
    body["b"].update({"profile_id": b_id, "filters": echo_b})
    return jsonify(body)

