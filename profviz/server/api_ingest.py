"""``POST /v1/ingest``: the collector's end of a push (:mod:`profviz.store.remote`). A sender's
batch (gzip JSON, :mod:`profviz.store.remote.wire`) with its id in ``X-Profviz-Batch`` is checked
whole, then stored in one transaction with its id, so a batch sent again is stored once and
collectors behind a load balancer keep no state. It needs the server's access token, even on
127.0.0.1. Answers: 200 ``{"requests", "profile_ids"}``; 400 (corrupt), 401 (token), 403 (a
server started without a token), 413 (too large), 422 (a value its store cannot hold: not
retried), 503 with Retry-After (busy, or its store failing: the sender retries)."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request

from ..store import StoreError, StoreValueError
from ..store.remote import wire
from .context import server_context
from .ingest import RETRY_AFTER_S, IngestBudget

bp = Blueprint("ingest_api", __name__)
TOKEN_SET_KEY = "PROFVIZ_TOKEN_SET"
_BATCH_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
DECODE_FACTOR = 8  # decoding takes about this many times the compressed body in memory


def _answer(status: int, message: str | None = None, **fields):
    response = jsonify(fields if message is None else {"error": {"status": status, "message": message}})
    response.status_code = status
    return response


@bp.post("/v1/ingest")
def receive_batch():
    if not current_app.config.get(TOKEN_SET_KEY):
        return _answer(403, "this profviz server takes no pushes: start 'profviz serve' with --token (or PROFVIZ_TOKEN) "
                            "and give senders the same token")
    batch_id = request.headers.get("X-Profviz-Batch", "")
    if not _BATCH_ID.match(batch_id):
        return _answer(400, "missing or malformed X-Profviz-Batch header: send a batch id (a UUID) with every push")
    length = request.content_length
    if length is None or length > wire.MAX_BODY_BYTES:
        return _answer(413 if length else 411, f"send a Content-Length of at most {wire.MAX_BODY_BYTES} bytes")
    budget = current_app.extensions.setdefault("profviz-ingest", IngestBudget())
    reserved = length * DECODE_FACTOR
    if not budget.take(reserved):
        response = _answer(503, "busy decoding other pushes: retry after the time in Retry-After")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    try:
        body = request.stream.read(wire.MAX_BODY_BYTES + 1)
        try:
            batch, spans = wire.decode(body, request.headers.get("Content-Encoding"))
        except wire.WireError as exc:
            return _answer(exc.status, str(exc))
        del body
        store = server_context().store
        try:
            if spans:
                store.insert_spans(spans, checked=True)
            ids = store.write_batch(batch, batch_id=batch_id)
        except StoreValueError as exc:  # the same batch would fail again: refused, not retried
            current_app.logger.warning("profviz: refused a pushed batch its store cannot hold: %s", exc)
            return _answer(422, "the collector's store cannot hold a value of this batch (its log says which): not stored")
        except StoreError as exc:
            current_app.logger.warning("profviz: could not store a pushed batch: %s", exc)
            response = _answer(503, "the collector could not store the batch now (its log says why): retry later")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
    finally:
        budget.give_back(reserved)
    return _answer(200, requests=len(batch), spans=len(spans), profile_ids=ids)
