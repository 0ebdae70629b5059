"""Ingest step: stream an ended batch's results into typed rows, then resolve items.

* The results ``.jsonl`` is read line by line (downloaded and parsed on a thread
  of its own, a chunk ahead) and stored in chunks with ON CONFLICT DO NOTHING, a
  few chunks a transaction, so a download cut at any byte is simply read again
  from the start: nothing is stored twice, nothing is dropped.
* A line that can't be parsed, or whose custom_id is not a request of this
  batch, goes to ``quarantine`` verbatim; the rest goes on.
* The batch is ``ingested`` only when the distinct custom_ids stored equal its
  request count; a clean download that is still short is fetched again, and
  after ``MAX_SHORT_DOWNLOADS`` the missing requests are resolved as missing
  (retried like expired ones) and the shortfall is noted on the batch.
* Results are not in request order (§5.2): everything is matched by custom_id.
* Items are resolved once the batch is read: succeeded answers in one statement,
  every other request through ``resolve``, page by page. On PostgreSQL the result
  writer has resolved most succeeded answers already, each committed transaction's
  on a thread of its own while the download goes on (``store/result_writer.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from orchestrator.api.jsonl import OVERSIZED_PREFIX_BYTES, ReadAhead
from orchestrator.api.models import ResultLine, Usage, load_result_line
from orchestrator.chunking import chunked
from orchestrator.domain.outcomes import decide, decide_invalid, decide_missing
from orchestrator.domain.output import INVALID_OUTPUT, Answers
from orchestrator.domain.planning import parse_custom_id
from orchestrator.domain.pricing import PriceTable, UsageCounts, cost_usd
from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus, Outcome, ResultType
from orchestrator.errors import APIError, ForeignResultsURLError, NotFoundError, StoreDataError
from orchestrator.steps.context import (
    INGEST_RETRY_S,
    MAX_SHORT_DOWNLOADS,
    StepContext,
    StepReport,
    log,
    utcnow,
)
from orchestrator.store.records import (
    BatchRecord,
    Lease,
    QuarantineLine,
    RequestRef,
    Resolution,
    ResultRow,
    ResultValues,
    Route,
    RouteTable,
)

BATCHES_PER_RUN = 4
#: The longest wait between two tries of a failing ingest.
MAX_INGEST_RETRY_S = 300.0
RESOLVE_PAGE_ROWS = 1000
#: A transaction stores at most this many lines, and stays open at most this many
#: seconds, before it commits: each commit writes again every index page its lines
#: touched (nearly all of them: lines come in random order), so one per 1,000-line
#: chunk cost more than the inserts; and SQLite's write lock is held meanwhile.
COMMIT_ROWS = 20_000
COMMIT_S = 2.0
#: Seconds the download may keep an open transaction waiting before it is committed.
IDLE_COMMIT_S = 0.05
#: Characters of a parse error kept in the quarantine row.
QUARANTINE_ERROR_CHARS = 2000
#: Why an item that is not succeeded failed, for result types that carry no error.
_NO_RESULT_REASON = {
    ResultType.EXPIRED: "the batch expired before this request was processed",
    ResultType.CANCELED: "the batch was canceled before this request was processed",
}
MISSING_RESULT = "missing_result"
RESULTS_UNAVAILABLE = "results_unavailable"
UNREADABLE_RESULT = "unreadable_result"


_CUSTOM_ID_FIELD = re.compile(rb'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
#: A row's custom_id (``ResultValues.custom_id``).
_CUSTOM_ID_OF_ROW = itemgetter(2)


class _LeaseLost(Exception):
    """Another worker took the batch over; stop touching it."""


class _NotThisBatch(Exception):
    """The adopted remote batch holds none of this batch's requests; nothing of it is
    stored here. ``owner``: the local batch whose requests it holds (None: another
    store's)."""

    def __init__(self, reason: str, owner: int | None) -> None:
        super().__init__(reason)
        self.owner = owner


def ingest(ctx: StepContext, now: datetime) -> StepReport:
    report = StepReport("ingest")
    leases = ctx.store.claim_batches(
        [BatchStatus.ENDED], ctx.owner, now, ctx.ttl_s, BATCHES_PER_RUN, job_id=ctx.job_id
    )
    for lease in leases:
        try:
            report.add(ingest_batch(ctx, lease))
        except _LeaseLost:
            log.warning(
                "batch %s: lease lost during ingest; another worker continues", lease.row_id
            )
            report.add("lease_lost")
        finally:
            ctx.store.release_batch(lease)
    return report


def ingest_batch(ctx: StepContext, lease: Lease) -> str:
    batch = ctx.store.get_batch(lease.row_id)
    if batch.results_url is None:
        return _finish(ctx, lease, batch, BatchStatus.UNAVAILABLE, "no results_url: batch gone")
    try:
        _download(ctx, lease, batch)
    except _NotThisBatch as exc:
        return _disown(ctx, lease, batch, str(exc), exc.owner)
    except ForeignResultsURLError as exc:
        # The results exist (and were billed) but only elsewhere: never fetched with
        # our key, and never bought again by re-sending. The items fail with the reason.
        reason = f"results not downloadable: {exc}"
        return _finish(ctx, lease, batch, BatchStatus.UNAVAILABLE, reason, lost=reason)
    except NotFoundError as exc:
        # Archived (29 days after created_at) or deleted: results can't be had.
        return _finish(ctx, lease, batch, BatchStatus.UNAVAILABLE, f"results unavailable: {exc}")
    except (APIError, StoreDataError) as exc:
        wait = ingest_backoff_s(batch.ingest_attempts)
        ctx.store.defer_ingest(lease, str(exc), utcnow() + timedelta(seconds=wait), utcnow())
        log.warning(
            "batch %s: ingest failed (%s); will download again in %.0f s", batch.id, exc, wait
        )
        return "deferred"
    # Complete when every request has a line, readable or not: an unreadable line is
    # not fetched again (it would read the same), and never bought again.
    stored = ctx.store.count_answered(batch.id)
    if stored < batch.request_count and batch.ingest_attempts + 1 < MAX_SHORT_DOWNLOADS:
        # A short (or empty) but clean file is fetched again, after a pause, before
        # anything is re-sent: the API may still be writing it.
        wait = ingest_backoff_s(batch.ingest_attempts)
        ctx.store.defer_ingest(
            lease,
            f"{stored}/{batch.request_count} results stored",
            utcnow() + timedelta(seconds=wait),
            utcnow(),
        )
        return "short"
    note = (
        None
        if stored >= batch.request_count
        else (
            f"{batch.request_count - stored} of {batch.request_count} results missing "
            "(see quarantine); those requests were resolved as missing"
        )
    )
    return _finish(ctx, lease, batch, BatchStatus.INGESTED, note)


def ingest_backoff_s(attempts: int) -> float:
    """Seconds before a failed ingest is tried again: doubling, capped."""
    return min(INGEST_RETRY_S * 2.0**attempts, MAX_INGEST_RETRY_S)


def _download(ctx: StepContext, lease: Lease, batch: BatchRecord) -> None:
    """Read the results file and store every line, a few chunks per transaction.

    A thread downloads and parses the next chunk while this one is routed and stored;
    the database statements here are few per chunk (SQLite runs each without the GIL),
    so the two overlap. The transaction is committed, and the lease extended with it,
    every ``COMMIT_ROWS`` lines or ``COMMIT_S`` seconds, and whenever the download keeps
    it waiting: an open transaction holds SQLite's write lock, which must not wait on
    the network.
    """
    assert batch.results_url is not None
    job = ctx.store.job_of_batch(batch.id)
    answers = None if job.output is None else Answers(job.output)
    # The batch's routes, held compactly, let the reader thread route each line too; a
    # batch whose custom_ids the table can't hold is routed here, a query a chunk. The
    # table was read while the batch's create ran, if this worker made it.
    table = ctx.routes.take(ctx.store, batch.id, batch.remote_id)
    with (
        ctx.api.results_lines(batch.results_url, betas=job.betas) as lines,
        ctx.store.result_writer(lease) as writer,
        ReadAhead(_parsed(batch.id, lines, ctx, answers, table)) as chunks,
    ):

        def commit() -> None:
            if not writer.commit(utcnow(), ctx.ttl_s):
                raise _LeaseLost

        ahead = chunks.items(on_idle=commit, late_s=IDLE_COMMIT_S)
        for index, (rows, unrouted, quarantine) in enumerate(ahead):
            if unrouted:
                routes = writer.route([p.custom_id for p in unrouted])
                rows = _routed(batch.id, unrouted, routes, quarantine)
                del unrouted  # the raw lines: what is left of them is in rows and quarantine
            if index == 0 and batch.adopted and batch.proven_at is None:
                commit()  # it calls the store: no transaction of ours may be open
                _prove_adoption(ctx, lease, batch, rows, quarantine)
            if not writer.store(rows, quarantine):
                raise _LeaseLost
            if writer.pending >= COMMIT_ROWS or writer.open_s >= COMMIT_S:
                commit()
        commit()


def _prove_adoption(
    ctx: StepContext,
    lease: Lease,
    batch: BatchRecord,
    rows: Sequence[ResultValues],
    quarantine: Sequence[QuarantineLine],
) -> None:
    """An adopted batch is this batch's only if its first results route to its own
    requests. Lines naming another local batch's requests hand it to that batch (a
    lost create of this store matched the wrong one); lines of another store sharing
    the key make it foreign. No custom_id at all proves nothing either way."""
    named = [q.custom_id for q in quarantine if q.custom_id]
    if not rows and not named:
        return
    owner = batch.id if rows else ctx.store.batch_of_requests(named)
    if owner == batch.id:  # its own requests (perhaps only unreadable ones)
        if not ctx.store.prove_adoption(lease, utcnow()):
            raise _LeaseLost
        return
    if owner is not None:
        raise _NotThisBatch(f"its results are the requests of batch {owner}", owner)
    tag = ctx.store.store_tag()
    whose = "this store's" if _ours(named[0], tag) else "another store's"
    raise _NotThisBatch(f"its results are {whose} requests (custom_id {named[0]!r})", None)


def _ours(custom_id: str, tag: str) -> bool:
    parts = parse_custom_id(custom_id)
    return parts is not None and parts.store_tag == tag


class _Parsed(NamedTuple):
    """One readable line, its row but for the route (item and attempt)."""

    line_no: int
    raw: bytes
    custom_id: str
    tail: _Tail


class _Chunk(NamedTuple):
    """A chunk of lines as the reader thread hands it over."""

    rows: list[ResultValues]
    #: Readable lines still to route (with no route table), else empty.
    unrouted: list[_Parsed]
    quarantine: list[QuarantineLine]


def _parsed(
    batch_id: int,
    lines: Iterable[bytes],
    ctx: StepContext,
    answers: Answers | None,
    table: RouteTable | None,
) -> Iterator[_Chunk]:
    """The download's lines, chunk by chunk, parsed and, with ``table``, routed (this
    runs on the reader thread)."""
    for chunk in chunked(enumerate(lines, start=1), ctx.settings.ingest_chunk_rows):
        parsed, quarantine = _parse(batch_id, chunk, ctx.prices, answers)
        if table is None:
            ready = _Chunk([], parsed, quarantine)
        else:
            ready = _Chunk(_routed(batch_id, parsed, table, quarantine), [], quarantine)
        # Held by the consumer from here: keep no reference while reading the next.
        del chunk, parsed
        yield ready
        del ready


def _parse(
    batch_id: int,
    chunk: Sequence[tuple[int, bytes]],
    prices: PriceTable,
    answers: Answers | None,
) -> tuple[list[_Parsed], list[QuarantineLine]]:
    """A chunk of numbered lines, parsed and typed; the unreadable ones quarantined."""
    parsed: list[_Parsed] = []
    quarantine: list[QuarantineLine] = []
    for line_no, raw in chunk:
        try:
            line = load_result_line(raw)
        except ValueError as exc:
            custom_id = _custom_id_in(raw)
            quarantine.append(_quarantine(batch_id, line_no, raw, custom_id, f"unparseable: {exc}"))
            continue
        tail = _tail(line["result"], prices, answers)
        parsed.append(_Parsed(line_no, raw, line["custom_id"], tail))
    return parsed, quarantine


def _routed(
    batch_id: int,
    parsed: Sequence[_Parsed],
    routes: Mapping[str, Route] | RouteTable,
    quarantine: list[QuarantineLine],
) -> list[ResultValues]:
    """The rows of the lines that are requests of this batch, in custom_id order; the
    others are added to ``quarantine``.

    In custom_id order, the order of the results' unique index (batch_id, custom_id)
    and nearly that of their item index: lines come in random order, and inserted as
    they come each row would land on an index page of its own, read and written back
    row after row. The sort is stable: of two lines of one request, the first is still
    the one stored."""
    rows: list[ResultValues] = []
    make = ResultValues._make
    for line in parsed:
        route = routes.get(line.custom_id)
        if route is None:
            error = "custom_id is not a request of this batch"
            quarantine.append(_quarantine(batch_id, line.line_no, line.raw, line.custom_id, error))
            continue
        rows.append(make((batch_id, route.item_id, line.custom_id, route.attempt, *line.tail)))
    rows.sort(key=_CUSTOM_ID_OF_ROW)
    return rows


def _custom_id_in(raw: bytes) -> str | None:
    """The custom_id an unreadable line shows, if any (it names whose result it is)."""
    found = _CUSTOM_ID_FIELD.search(raw[:OVERSIZED_PREFIX_BYTES])
    return found.group(1).decode("ascii") if found else None


def _quarantine(
    batch_id: int, line_no: int, raw: bytes, custom_id: str | None, error: str
) -> QuarantineLine:
    return QuarantineLine(
        batch_id=batch_id,
        line_no=line_no,
        custom_id=custom_id,
        raw=raw.decode("utf-8", errors="replace"),
        error=error[:QUARANTINE_ERROR_CHARS],
    )


def result_row(
    batch_id: int,
    route: Route,
    line: ResultLine,
    prices: PriceTable,
    answers: Answers | None = None,
) -> ResultRow:
    """The typed ``results`` row of one parsed line; ``answers``: the job's declared
    output, against which a succeeded answer is read and validated."""
    tail = _tail(line.result.model_dump(), prices, answers)
    return ResultRow(batch_id, route.item_id, line.custom_id, route.attempt, *tail)


class _Tail(NamedTuple):
    """A result row's fields after the route: what a line alone determines."""

    result_type: ResultType
    message_id: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    text: str | None = None
    content: str | None = None
    output: str | None = None
    output_error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_5m_input_tokens: int | None = None
    cache_creation_1h_input_tokens: int | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    cost_usd: float | None = None


#: A row is the route's four fields (batch, item, custom_id, attempt) then these
#: (``ResultValues``); tests/unit/test_ingest_rows.py checks that they line up.
#: A result type by its wire value (a member of the enum compares and hashes as it).
_RESULT_TYPES = {kind.value: kind for kind in ResultType}


def _tail(result: Mapping[str, Any], prices: PriceTable, answers: Answers | None) -> _Tail:
    """The fields of one line's ``result``, given as plain values of exactly the
    models' types (``api.models.load_result_line``): read from the dict, not through
    the models, which would cost as much again as the rest of the ingest."""
    kind = _RESULT_TYPES[result["type"]]
    if kind is ResultType.SUCCEEDED:
        return _succeeded(result["message"], prices, answers)
    if kind is ResultType.ERRORED:
        error = result["error"]["error"]
        return _Tail(kind, error_type=error["type"], error_message=error["message"])
    return _Tail(kind)


def _succeeded(message: Mapping[str, Any], prices: PriceTable, answers: Answers | None) -> _Tail:
    usage = message["usage"]
    split = usage.get("cache_creation")
    content = message["content"]
    stop_reason = message.get("stop_reason")
    price = prices.price_for(message["model"])
    output = invalid = None
    if answers is not None:
        output, invalid = answers.read(content, stop_reason)
    # Positionally, in ``_Tail``'s order (a call by keyword costs three times as much).
    return _Tail(
        ResultType.SUCCEEDED,
        message["id"],
        message["model"],
        stop_reason,
        message.get("stop_sequence"),
        # text: all text blocks' text, in order (``api.models.Message.text``).
        "".join(
            block["text"]
            for block in content
            if block.get("type") == "text" and isinstance(block.get("text"), str)
        ),
        orjson.dumps(content).decode(),
        output,
        invalid,
        usage["input_tokens"],
        usage["output_tokens"],
        usage.get("cache_creation_input_tokens"),
        usage.get("cache_read_input_tokens"),
        split.get("ephemeral_5m_input_tokens") if split else None,
        split.get("ephemeral_1h_input_tokens") if split else None,
        usage.get("service_tier"),
        usage.get("inference_geo"),
        None,  # error_type
        None,  # error_message
        # cost_usd: only succeeded results are billed (§5.4); an unpriced model costs
        # NULL, not 0.
        cost_usd(_usage_counts(usage), price) if price is not None else None,
    )


def usage_counts(usage: Usage) -> UsageCounts:
    """The billable token counts of a message's usage (optional fields may be null)."""
    return _usage_counts(usage.model_dump())


def _usage_counts(usage: Mapping[str, Any]) -> UsageCounts:
    split = usage.get("cache_creation")
    return UsageCounts(
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_creation_input_tokens=usage.get("cache_creation_input_tokens") or 0,
        cache_read_input_tokens=usage.get("cache_read_input_tokens") or 0,
        cache_5m_tokens=split.get("ephemeral_5m_input_tokens") if split else None,
        cache_1h_tokens=split.get("ephemeral_1h_input_tokens") if split else None,
        inference_geo=usage.get("inference_geo"),
    )


def _disown(
    ctx: StepContext, lease: Lease, batch: BatchRecord, reason: str, owner: int | None
) -> str:
    """Let go of a wrongly adopted batch: the remote batch goes to its owner (or is
    remembered as foreign), and this batch's create is reconciled again without it,
    or tries the next listed match it watches."""
    now = utcnow()
    status = ctx.store.disown(lease, reason, now, owner=owner)
    if status is None:
        retry_at = now + timedelta(seconds=INGEST_RETRY_S)
        ctx.store.defer_ingest(lease, f"not ours, undo postponed: {reason}", retry_at, now)
        return "deferred"
    whose = f"handed to batch {owner}" if owner is not None else "remembered as foreign"
    then = (
        "reconciling again"
        if status is BatchStatus.UNKNOWN
        else f"trying the next match, {ctx.store.get_batch(batch.id).remote_id}"
    )
    log.warning(
        "batch %s: adopted %s was not its own (%s): %s; %s",
        batch.id,
        batch.remote_id,
        reason,
        whose,
        then,
    )
    return "foreign" if owner is None else "handed_over"


def _finish(
    ctx: StepContext,
    lease: Lease,
    batch: BatchRecord,
    status: BatchStatus,
    note: str | None,
    *,
    lost: str | None = None,
) -> str:
    job = ctx.store.job_of_batch(batch.id)
    canceled = job.status is JobStatus.CANCELED
    # Succeeded answers in one statement; ``resolve`` decides the rest, page by page.
    if not ctx.store.resolve_succeeded(lease, utcnow()):
        raise _LeaseLost
    after = ""
    while page := ctx.store.unresolved_refs(batch.id, after, RESOLVE_PAGE_ROWS):
        resolutions = [resolve(ref, job.max_attempts, canceled, lost) for ref in page]
        if not ctx.store.resolve_items(lease, resolutions, utcnow()):
            raise _LeaseLost
        after = page[-1].custom_id
    if not ctx.store.finish_batch(lease, status, utcnow(), note):
        raise _LeaseLost
    log.info("batch %s: %s%s", batch.id, status.value, f" ({note})" if note else "")
    if ctx.store.finish_job_if_done(job.id, utcnow()):
        log.info("job %s (%s): every item is finished", job.name, job.id)
    return status


def resolve(
    ref: RequestRef, max_attempts: int, job_canceled: bool, lost: str | None = None
) -> Resolution:
    """What happens to an item given its result (or the lack of one) in this batch.

    A result the API returned but that can't be had (``lost``: its file is elsewhere)
    or read (its line is quarantined) was billed: the item fails with the reason
    instead of being bought again.
    """
    error_type: str | None
    message: str | None
    if ref.result_type is None and (lost or ref.quarantined):
        kind, reason = (RESULTS_UNAVAILABLE, lost) if lost else (UNREADABLE_RESULT, ref.quarantined)
        return Resolution(ref.item_id, ItemStatus.FAILED, None, kind, f"{reason} (not re-sent)")
    if ref.result_type is None:
        outcome = decide_missing(ref.attempt, max_attempts, canceled_by_user=job_canceled)
        error_type, message = MISSING_RESULT, "no result line for this request"
    elif ref.result_type is ResultType.SUCCEEDED and ref.output_error is not None:
        # Paid, but not the answer asked for: a new attempt, like a server error.
        outcome = decide_invalid(ref.attempt, max_attempts, canceled_by_user=job_canceled)
        error_type, message = INVALID_OUTPUT, ref.output_error
    else:
        outcome = decide(
            ref.result_type,
            ref.error_type,
            ref.attempt,
            max_attempts,
            canceled_by_user=job_canceled,
        )
        error_type, message = _error_of(ref)
    if outcome is Outcome.SUCCEEDED:
        error_type = message = None
    elif outcome is Outcome.FAILED and (
        ref.result_type in (ResultType.EXPIRED, None) or error_type == INVALID_OUTPUT
    ):
        message = f"{message} (after {ref.attempt} attempts)"
    return Resolution(ref.item_id, outcome.item_status, ref.result_id, error_type, message)


def _error_of(ref: RequestRef) -> tuple[str | None, str | None]:
    if ref.result_type is ResultType.ERRORED:
        return ref.error_type, ref.error_message
    if ref.result_type in _NO_RESULT_REASON:
        return ref.result_type, _NO_RESULT_REASON[ref.result_type]
    return None, None
