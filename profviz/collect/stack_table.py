"""Interned stacks of the in-process sampler (:class:`StackTable`), and turning its samples into
model profiles (:func:`samples_to_profile`)."""

from __future__ import annotations

import types

from ..model import Profile, TableLists

RUNS_KEPT = 8192  # StackTable.intern_run's remembered runs (each ~1 KB at 25 frames)
TABLE_FULL_FRAME = ("(profviz stack table full)", "<profviz>", 0)



def qualified_name(code: types.CodeType) -> str:
    """``Class.method`` (Python >= 3.11's ``co_qualname``), else the plain name: every collector names frames so."""
    return getattr(code, "co_qualname", code.co_name)

class StackTable:
    """Interned stacks as (prefix stack id, code object, line); id -1 is the empty stack.

    Only the sampler thread appends; other threads may read ids it has handed out (list reads
    are safe under the GIL). Past ``limit`` entries new stacks map to one placeholder stack.
    """

    def __init__(self, limit: int = 1_000_000):
        self.limit = limit
        self.prefix: list[int] = []
        self.code: list = []
        self.line: list[int] = []
        self._index: dict[tuple, int] = {}
        self._by_instruction: dict[tuple, int] = {}
        self._runs: dict[tuple, tuple] = {}  # see intern_run
        self.full_stack = -1
        # stack id -> the tables a new profile gets from that stack alone (see _new_profile_tables)
        self.profile_prefixes: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.prefix)

    def intern(self, prefix: int, code, line: int) -> int:
        """The id of stack ``prefix`` + ``code`` at ``line``. Keyed by the code object's identity:
        code objects compare equal by content, file name aside, so two functions alike in two
        files would share a stack (and the hash is recomputed from the content at each lookup).
        The table holds every code object it has interned, so no id in a key can be reused."""
        key = (prefix, id(code), line)
        found = self._index.get(key)
        if found is not None:
            return found
        if len(self.prefix) >= self.limit:
            if self.full_stack < 0:
                self.full_stack = len(self.prefix)
                self.prefix.append(-1)
                self.code.append(None)
                self.line.append(0)
            return self.full_stack
        index = len(self.prefix)
        self.prefix.append(prefix)
        self.code.append(code)
        self.line.append(line)
        self._index[key] = index
        return index

    def intern_instruction(self, prefix: int, code, offset: int) -> int:
        """:meth:`intern` of a frame of ``code`` stopped at instruction byte offset ``offset`` (``f_lasti``).

        Keyed first by offset: the line is looked up in the code's line table only the first
        time an instruction is seen under a prefix. The key holds ``id(code)``, not the code
        object, whose hash is recomputed from its contents at every lookup; the entry keeps the
        code object alive and is used only for that very object, so a reused id cannot match.
        """
        key = (prefix, id(code), offset)
        found = self._by_instruction.get(key)
        if found is None or found[1] is not code:
            if len(self._by_instruction) >= 2 * self.limit:
                self._by_instruction.clear()
            found = self._by_instruction[key] = (self.intern(prefix, code, _line_at(code, offset)), code)
        return found[0]

    def intern_run(self, prefix: int, codes: list, offsets: list[int]) -> tuple[int, ...]:
        """The stack ids of a run of frames on top of stack ``prefix``: ``codes[i]`` stopped at byte
        offset ``offsets[i]``, root first (each :meth:`intern_instruction` on the one before).

        Whole runs are remembered (up to ``RUNS_KEPT``, then forgotten all at once): a walk's
        frames usually repeat a run seen before (another request to the same endpoint), and one
        lookup keyed by the whole run costs far less than one per frame. The key
        holds ``id()`` of each code object (see :meth:`intern_instruction`); the entry keeps the
        code objects alive, so no id in a key can be reused while the key exists.
        """
        key = (prefix, *map(id, codes), *offsets)
        found = self._runs.get(key)
        if found is not None:
            return found[0]
        by_instruction, intern_instruction = self._by_instruction, self.intern_instruction
        stack, run = prefix, []
        for code, offset in zip(codes, offsets):
            found = by_instruction.get((stack, id(code), offset))  # intern_instruction's lookup, inlined
            stack = found[0] if found is not None and found[1] is code else intern_instruction(stack, code, offset)
            run.append(stack)
        if len(self._runs) >= RUNS_KEPT:
            self._runs.clear()
        run = tuple(run)
        self._runs[key] = (run, tuple(codes))
        return run

    def frame(self, stack_id: int) -> tuple[str, str, int]:
        """(function, file, line) of the innermost frame of a stack."""
        code = self.code[stack_id]
        if code is None:
            return TABLE_FULL_FRAME
        return qualified_name(code), code.co_filename, int(self.line[stack_id] or 0)

    def nodes(self, start: int, end: int) -> list[tuple[int, int, str, str, int]]:
        """Stacks ``start`` .. ``end - 1`` as ``(id, prefix id, function, file, line)`` (a prefix id is
        always lower than its stack's)."""
        prefix, frame = self.prefix, self.frame
        return [(node, prefix[node], *frame(node)) for node in range(start, end)]

    def frames(self, stack_id: int) -> list[tuple[str, str, int]]:
        """(function, file, line) triples of a stack, root first."""
        out = []
        while stack_id >= 0:
            out.append(self.frame(stack_id))
            stack_id = self.prefix[stack_id]
        out.reverse()
        return out


def _line_at(code, offset: int) -> int:
    """The line of the instruction at byte ``offset`` of ``code`` (what ``frame.f_lineno`` reports)."""
    if offset < 0:
        return code.co_firstlineno
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line or 0
    return 0


class StackConverter:
    """Turns :class:`StackTable` stack ids into one profile's stack indexes.

    Each table node (prefix, code, line) becomes one ``intern_stack(prefix, intern_frame(...))``
    the first time it is met, and is remembered: stacks sharing a prefix (all of a request's
    stacks share the server's and the framework's frames) convert that prefix once per profile.
    """

    def __init__(self, table: StackTable, profile: Profile):
        self.table = table
        self.profile = profile
        self._stacks: dict[int, int] = {-1: -1}

    def stack(self, stack_id: int) -> int:
        converted = self._stacks.get(stack_id)
        if converted is not None:
            return converted
        pending = []
        node = stack_id
        while node not in self._stacks:
            pending.append(node)
            node = self.table.prefix[node]
        stack = self._stacks[node]
        table, profile = self.table, self.profile
        for node in reversed(pending):
            stack = self._stacks[node] = profile.intern_stack(stack, profile.intern_frame(*table.frame(node)))
        return stack


PREFIX_EVERY = 8  # _new_profile_tables remembers a first stack's tables at every 8th depth and at its leaf
PREFIXES_KEPT = 4096  # at most this many remembered, then forgotten all at once


def _new_profile_tables(table: StackTable, profile: Profile, stack_ids: list[int]) -> dict[int, int]:
    """Fill the empty tables of a new ``profile`` with the stacks ``stack_ids`` use; table id -> profile stack.

    The tables come out exactly as :class:`StackConverter` builds them through the interning
    methods (same strings, frames and stacks in the same order), built in a :class:`TableLists`
    and handed to the profile at once (per node, the interning methods' checks and the arrays'
    appends cost more than the conversion itself; ``set_tables`` checks the whole tables once).

    The first stack is converted into empty tables, so what its root-first frames add is a pure
    function of the table's nodes: the table remembers it (``profile_prefixes``) at every
    ``PREFIX_EVERY``-th depth and at the leaf, and a later profile whose first stack passes
    through a remembered node starts from a copy (C-level list and dict building) and converts
    only the nodes above it: the server's and the framework's frames, below every request's
    stacks, are converted once per process, not once per stored profile.
    """
    table_prefix, frame_of, prefixes_kept = table.prefix, table.frame, table.profile_prefixes
    first = stack_ids[0] if stack_ids else -1
    node = first
    while node >= 0 and node not in prefixes_kept:
        node = table_prefix[node]
    if node >= 0:
        nodes, strings, functions, files, lines, stack_frames = prefixes_kept[node]
        nodes = list(nodes)
        tables = TableLists(strings, functions, files, lines, range(-1, len(nodes) - 1), stack_frames)
    else:
        nodes, tables = [], TableLists()
    converted = dict(zip(nodes, range(len(nodes))))
    converted[-1] = -1
    intern_frame, intern_stack = tables.frame, tables.stack
    remembered = []  # (node, string count, frame count, depth) of the first stack's nodes to remember
    for stack_id in stack_ids:
        if stack_id in converted:
            continue
        pending = []
        node = stack_id
        while node not in converted:
            pending.append(node)
            node = table_prefix[node]
        stack = converted[node]
        pending.reverse()
        if stack_id == first:
            nodes.extend(pending)  # the first stack's chain, root first: its nodes are stacks 0, 1, ...
        for node in pending:
            stack = converted[node] = intern_stack(stack, intern_frame(*frame_of(node)))
            if stack_id == first and ((stack + 1) % PREFIX_EVERY == 0 or node == first):
                remembered.append((node, len(tables.strings), len(tables.functions), stack + 1))
    if remembered:
        if len(prefixes_kept) + len(remembered) > PREFIXES_KEPT:
            prefixes_kept.clear()
        for node, string_count, frame_count, depth in remembered:
            prefixes_kept[node] = (
                tuple(nodes[:depth]), tuple(tables.strings[:string_count]), tuple(tables.functions[:frame_count]),
                tuple(tables.files[:frame_count]), tuple(tables.lines[:frame_count]), tuple(tables.stack_frames[:depth]),
            )
    tables.fill(profile)
    return converted


def samples_to_profile(
    table: StackTable,
    samples: list,
    *,
    pid: int,
    tid: int,
    thread_name: str,
    meta: dict,
    profile: Profile | None = None,
) -> Profile:
    """Add sampler samples of one thread to ``profile`` (a new one with ``meta`` if None).

    A new profile is filled in bulk (see :func:`_new_profile_tables`): the same profile as
    through ``intern_frames`` and ``append_sample``, built with :meth:`Profile.set_tables` and
    :meth:`Profile.extend_samples`, which check what those check.
    """
    if profile is not None:
        thread = profile.add_thread(pid, tid, thread_name)
        stack_of = StackConverter(table, profile).stack
        stacks = [stack_of(sample[1]) for sample in samples]  # frames first, then reasons: the bulk path's string order
        for (time_ns, _, state, weight_ns, reason), stack in zip(samples, stacks):
            profile.append_sample(time_ns, thread, stack, weight_ns, state, reason)
        return profile
    profile = Profile(meta)
    thread = profile.add_thread(pid, tid, thread_name)
    converted = _new_profile_tables(table, profile, [sample[1] for sample in samples])
    profile.extend_samples(
        [sample[0] for sample in samples], thread, [converted[sample[1]] for sample in samples],
        [sample[3] for sample in samples], [sample[2] for sample in samples], [sample[4] for sample in samples],
    )
    return profile
