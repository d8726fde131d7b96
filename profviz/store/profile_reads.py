"""Reading profiles, the same in every SQL backend: metadata rows, the two blobs decoded, a
shared-stack profile rebuilt from its stack nodes."""

from __future__ import annotations

from typing import Any

from ..model import Profile
from .base import PROFILE_META_KEYS, ProfileNotFound, StoreError
from .encoding import EncodingError, decode_profile
from .shared_stacks import NodeRows, decode_shared, is_shared
from .summary import decode_meta

_SELECT_META = f"SELECT {', '.join(PROFILE_META_KEYS)} FROM profiles"


class ProfileReads:
    """Mixin of a backend with ``read(sql, params)`` (``?`` placeholders), ``location`` and
    ``_nodes_reaching(source, node ids)`` (the stack nodes a shared-stack profile needs)."""

    location: str

    def profile_meta(self, profile_id: int) -> dict[str, Any]:
        rows = self.read(_SELECT_META + " WHERE id = ?", (int(profile_id),))
        if not rows:
            raise ProfileNotFound(f"no profile with id {profile_id} in {self.location}: run 'profviz list' to see the ids")
        return decode_meta(rows[0])

    def load_profile(self, profile_id: int) -> Profile:
        meta = self.profile_meta(profile_id)
        rows = self.read("SELECT tables, samples FROM profile_data WHERE profile_id = ?", (int(profile_id),))
        if not rows:
            raise StoreError(f"profile {profile_id} has no data in {self.location}: delete it with 'profviz delete {profile_id}'")
        tables, samples = bytes(rows[0]["tables"]), bytes(rows[0]["samples"])
        try:
            if is_shared(tables):
                return decode_shared(meta, tables, samples, self._nodes_reaching)
            return decode_profile(meta, tables, samples)
        except EncodingError as exc:
            raise StoreError(f"profile {profile_id} in {self.location} is damaged ({exc}): delete it with 'profviz delete {profile_id}'") from None

    def list_profiles(self, *, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        sql, params = _SELECT_META, []
        if kind:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY start_ns DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [decode_meta(r) for r in self.read(sql, params)]

    def _nodes_reaching(self, source: str, node_ids: list[int]) -> NodeRows:
        raise NotImplementedError
