"""How a writer turns a list of ops into calls: chunking, halving and per-record retries.

Pure logic shared by the Salesforce and HubSpot writers (no I/O: the writers inject ``send``):

* :func:`plan_chunks`: ops in order, at most ``size`` a call, never one key (CRM id or external
  id) twice in a call. Without duplicates that is ``ceil(n / size)`` consecutive slices, the
  count :func:`app.crm.writes.planned_calls` promises; a repeated key goes to a later call.
* :func:`send_split`: a chunk the CRM refuses as a whole (a 400 for the call, not per record)
  is split in halves, recursively, until the record that causes it is alone; that record fails
  with the CRM's code and message, the others are written.
* :func:`write_with_retries`: records whose result is a transient per-record failure
  (``UNABLE_TO_LOCK_ROW``, HubSpot ``LOCKED``) are sent again, together, after a backoff, up to
  the retry policy's attempts; what is still failing then stays ``FAILED`` with
  ``retriable=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from app.crm.writes import WriteOutcome, WriteResult

Send = Callable[[list[int]], Mapping[int, WriteResult]]
"""Send the ops at these indices in one call; a result for each index (a missing one is
reported as ``NO_RESULT``), or raise :class:`ChunkRefused`."""


class ChunkRefused(Exception):
    """The CRM refused the whole call (HTTP 400): no record of the chunk was written."""

    def __init__(
        self, code: str | None, message: str, fields: Sequence[str] = (), status: int = 400
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = tuple(fields)
        self.status = status


def plan_chunks(keys: Sequence[Hashable], size: int) -> list[list[int]]:
    """Indices of ``keys`` in chunks of at most ``size``, order kept, no key twice in a chunk.

    The first occurrence of every key goes into the first chunks (consecutive slices), the
    second occurrences into the chunks after them, and so on: a key's later writes are sent
    after its earlier ones, as the caller listed them.
    """
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    seen: dict[Hashable, int] = {}
    rounds: list[list[int]] = []
    for index, key in enumerate(keys):
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(index)
    return [group[i : i + size] for group in rounds for i in range(0, len(group), size)]


def failed(
    key: int,
    code: str | None,
    message: str,
    fields: Sequence[str] = (),
    *,
    retriable: bool = False,
) -> WriteResult:
    return WriteResult(
        key=key,
        outcome=WriteOutcome.FAILED,
        code=code,
        message=message[:1000],
        fields=tuple(fields),
        retriable=retriable,
    )


NO_RESULT = "NO_RESULT"
"""The CRM answered the call but said nothing about this record (HubSpot drops merged-away ids
from a batch's results; a Bulk job leaves rows unprocessed)."""


def send_split(chunk: list[int], send: Send, keys: Sequence[int]) -> dict[int, WriteResult]:
    """Send ``chunk``; a whole-call refusal is split in halves until the bad record is alone.

    ``keys`` are the ops' caller keys (``WriteOp.key``), by index, for the results made here.
    """
    try:
        answer = send(chunk)
    except ChunkRefused as refused:
        if len(chunk) == 1:
            index = chunk[0]
            return {index: failed(keys[index], refused.code, refused.message, refused.fields)}
        middle = len(chunk) // 2
        out = send_split(chunk[:middle], send, keys)
        out.update(send_split(chunk[middle:], send, keys))
        return out
    out = {}
    for index in chunk:
        result = answer.get(index)
        if result is None:
            result = failed(
                keys[index],
                NO_RESULT,
                "the CRM answered the call without a result for this record",
                retriable=True,
            )
        out[index] = result
    return out


@dataclass
class RetryRounds:
    """Per-record retries: ``attempts`` sends in all (first included), ``wait(n)`` seconds after
    the n-th; ``retry_codes`` are the per-record codes worth sending again."""

    attempts: int
    wait: Callable[[int], float]
    sleep: Callable[[float], None]
    retry_codes: frozenset[str] = field(default_factory=frozenset)


def write_with_retries(
    indices: Sequence[int],
    id_keys: Sequence[Hashable],
    size: int,
    send: Send,
    keys: Sequence[int],
    rounds: RetryRounds,
    *,
    first: Callable[[list[int]], dict[int, WriteResult]] | None = None,
) -> dict[int, WriteResult]:
    """Write the ops at ``indices``: chunked (:func:`plan_chunks` on ``id_keys``), halved on
    refusal (:func:`send_split`), transient per-record failures sent again.

    ``first`` replaces the first round's chunked sends (a Salesforce Bulk job writes them all
    at once); retries always go through ``send`` in chunks.
    """
    results: dict[int, WriteResult] = {}

    def chunked(todo: list[int]) -> dict[int, WriteResult]:
        out: dict[int, WriteResult] = {}
        for chunk in plan_chunks([id_keys[i] for i in todo], size):
            out.update(send_split([todo[i] for i in chunk], send, keys))
        return out

    todo = list(indices)
    results.update(first(todo) if first is not None else chunked(todo))
    attempt = 1
    while attempt < rounds.attempts:
        todo = [
            i
            for i in indices
            if not results[i].ok and results[i].retriable and results[i].code in rounds.retry_codes
        ]
        if not todo:
            break
        rounds.sleep(rounds.wait(attempt))
        attempt += 1
        results.update(chunked(todo))
    return results
