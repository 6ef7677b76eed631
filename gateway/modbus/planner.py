"""Modbus request planner: a device's signals -> the fewest read requests.

Per device and table, the signals a poll wants are merged into as few read requests as
the protocol allows: at most 125 registers (holding/input, functions 3/4) or 2000 bits
(coil/discrete, functions 1/2) a request, reading through at most `max_gap` registers
(or bits) that belong to no wanted signal. A plan depends only on the profile, the
signals and the options, so it is compiled once per configuration and reused by every
poll cycle; this module is pure (no I/O).

The greedy rule
---------------
Sort a table's signals by (start, end) protocol address: s_1 .. s_n, s_k = [a_k, b_k).
A request reads one run s_i .. s_j of them, from a_i up to max(b_i .. b_j). The run is
valid when

- its span max(b_i .. b_j) - a_i is at most the limit, and
- every gap a_{k+1} - max(b_i .. b_k) (i <= k < j) is at most `max_gap`: the registers
  between the signals read so far and the next one that belong to no signal of the run
  (zero or negative when signals touch, overlap or share a register, as bits do).

`plan_reads` scans left to right and extends the current request with the next signal
while both rules hold, else starts a new request.

Why greedy is minimal
---------------------
Let f(k) be the fewest valid runs covering s_k .. s_n (f(n + 1) = 0). Both rules only get
harder as a run grows to the right (the span never shrinks, and a run keeps all the gaps of
its prefixes), so the valid first runs are exactly s_1 .. s_k for k <= j, where s_1 .. s_j
is the run greedy takes. Hence min = 1 + min_{k <= j} f(k + 1), and greedy, which then
restarts at s_{j+1}, is minimal by induction on n once f(j + 1) <= f(k + 1) for k < j.

Take a minimal partition of s_{k+1} .. s_n into runs and delete s_{k+1} .. s_j. Runs
inside that stretch vanish, runs after it are untouched, and at most one run s_p .. s_q
(p <= j < q) is cut to s_{j+1} .. s_q. The cut run's span is no larger (a_{j+1} >= a_p).
Its gaps are unchanged if b_{j+1} >= E' = max(b_p .. b_j); E' <= E = max(b_1 .. b_j).
Greedy stopped before s_{j+1} for one of two reasons:

- gap: a_{j+1} - E > max_gap. Then the run s_p .. s_q has the gap
  a_{j+1} - E' >= a_{j+1} - E > max_gap before s_{j+1}: it is not valid, so it cannot
  exist, and nothing is cut.
- span: max(E, b_{j+1}) - a_1 > limit although E - a_1 <= limit, so b_{j+1} > E >= E'.

Either way the result is a valid partition of s_{j+1} .. s_n with at most f(k + 1) runs.
QED. (Restricting requests to runs of the sorted order loses nothing either: the tests
check the greedy count against every set partition of small random maps.)

`minimum_requests` is the exhaustive reference (every split of the sorted signals into
runs) that the tests and the benchmark compare the greedy plan with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from facility.codec import CodecError
from facility.profile import MAX_REGISTER_ADDRESS, ModbusProfile, ModbusSignal, Table
from facility.registers import Value, decode_signal

PROTOCOL_MAX_REGISTERS = 125  # functions 3 and 4
PROTOCOL_MAX_BITS = 2000  # functions 1 and 2
DEFAULT_MAX_GAP = 8
BRUTE_FORCE_MAX_SIGNALS = 16  # 2^15 splits: the reference stays well under a second

# (first protocol address, one past the last, signal)
_Span = tuple[int, int, ModbusSignal]


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: `count` registers (or bits) of `table` from protocol `address`."""

    table: Table
    address: int  # protocol (0-based PDU) address of the first register or bit
    count: int
    signals: tuple[ModbusSignal, ...]  # in address order, each wholly inside the request

    @property
    def end(self) -> int:
        """One past the last protocol address read."""
        return self.address + self.count

    def decode(
        self, profile: ModbusProfile, data: Sequence[int] | Sequence[bool]
    ) -> list[tuple[ModbusSignal, Value]]:
        """The response's registers (or bits) -> each signal with its engineering value.

        `profile` is the one the request was planned from. Register responses must hold
        exactly `count` registers; bit responses at least `count` bits (a device pads
        them to whole bytes). Anything else raises CodecError.
        """
        bits = self.table.is_bit_table
        if len(data) < self.count if bits else len(data) != self.count:
            unit = "bits" if bits else "registers"
            raise CodecError(
                f"{self.table.value} {self.address}+{self.count}: response has {len(data)} {unit}"
            )
        out: list[tuple[ModbusSignal, Value]] = []
        for signal in self.signals:
            at = profile.protocol_address(signal) - self.address
            if at < 0 or at + signal.count > self.count:
                raise CodecError(
                    f"{signal.name!r} lies outside {self.table.value} "
                    f"{self.address}+{self.count} (request planned from another profile?)"
                )
            registers = [int(data[at])] if bits else data[at : at + signal.count]
            out.append((signal, decode_signal(profile, signal, registers)))
        return out


@dataclass(frozen=True)
class RequestPlan:
    """The read requests of one poll cycle of one device, table by table."""

    requests: tuple[ReadRequest, ...] = ()

    def __len__(self) -> int:
        return len(self.requests)

    def __iter__(self) -> Iterator[ReadRequest]:
        return iter(self.requests)

    @property
    def registers_read(self) -> int:
        """Registers plus bits read by the whole plan, gaps read through included."""
        return sum(r.count for r in self.requests)

    @property
    def words_read(self) -> int:
        return sum(r.count for r in self.requests if not r.table.is_bit_table)

    @property
    def bits_read(self) -> int:
        return sum(r.count for r in self.requests if r.table.is_bit_table)

    @property
    def signals(self) -> tuple[ModbusSignal, ...]:
        """Every planned signal, in request order."""
        return tuple(s for r in self.requests for s in r.signals)

    def for_table(self, table: Table) -> tuple[ReadRequest, ...]:
        return tuple(r for r in self.requests if r.table is table)


def protocol_limit(table: Table) -> int:
    """Most registers (or bits) one read of this table may ask for."""
    return PROTOCOL_MAX_BITS if table.is_bit_table else PROTOCOL_MAX_REGISTERS


def plan_reads(
    profile: ModbusProfile,
    signals: Iterable[ModbusSignal] | None = None,
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_registers: int = PROTOCOL_MAX_REGISTERS,
    max_bits: int = PROTOCOL_MAX_BITS,
) -> RequestPlan:
    """Plan the fewest reads of `signals` (default: all the profile's signals).

    Requests come table by table (holding, input, coil, discrete), each table's in
    address order. `max_gap` is how many registers (bits) belonging to no wanted signal
    a request may read through between two signals; 0 merges only signals that touch or
    overlap. `max_registers` and `max_bits` may lower the protocol limits for devices
    that accept less. Raises ValueError for bad options, a signal that does not fit one
    request, a signal outside the address range, or two different signals of one name.
    """
    _check_gap(max_gap)
    limits = {
        table: _check_limit(table, max_bits if table.is_bit_table else max_registers)
        for table in Table
    }
    wanted = _unique(profile.signals if signals is None else signals)
    requests: list[ReadRequest] = []
    for table in Table:
        spans = _sorted_spans(profile, wanted, table, limits[table])
        requests.extend(_greedy(table, spans, max_gap, limits[table]))
    return RequestPlan(tuple(requests))


def _greedy(table: Table, spans: list[_Span], max_gap: int, limit: int) -> list[ReadRequest]:
    requests: list[ReadRequest] = []
    run: list[ModbusSignal] = []
    start = end = 0
    for a, b, signal in spans:
        if run and a - end <= max_gap and max(end, b) - start <= limit:
            run.append(signal)
            end = max(end, b)
            continue
        if run:
            requests.append(ReadRequest(table, start, end - start, tuple(run)))
        run, start, end = [signal], a, b
    if run:
        requests.append(ReadRequest(table, start, end - start, tuple(run)))
    return requests


def minimum_requests(
    profile: ModbusProfile,
    signals: Iterable[ModbusSignal],
    table: Table,
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    limit: int | None = None,
) -> int:
    """Reference: the fewest valid runs for `table`'s signals, by exhaustive search.

    Tries every one of the 2^(n-1) ways to cut the n sorted signals of `table` into
    runs and keeps the smallest count whose runs are all valid (see the module
    docstring). Exponential: for tests and benchmarks only, n <= BRUTE_FORCE_MAX_SIGNALS.
    `limit` defaults to the protocol limit of the table.
    """
    _check_gap(max_gap)
    limit = _check_limit(table, protocol_limit(table) if limit is None else limit)
    spans = _sorted_spans(profile, _unique(signals), table, limit)
    n = len(spans)
    if n == 0:
        return 0
    if n > BRUTE_FORCE_MAX_SIGNALS:
        raise ValueError(f"{n} signals: the brute force takes at most {BRUTE_FORCE_MAX_SIGNALS}")
    # valid[i][j]: whether one request may read signals i..j (j >= i)
    valid = [
        [j >= i and _run_is_valid(spans[i : j + 1], max_gap, limit) for j in range(n)]
        for i in range(n)
    ]
    best = n  # one request a signal is always valid
    for cuts in range(1 << (n - 1)):  # bit k set: cut between signal k and k + 1
        runs, first = 0, 0
        for k in range(n):
            if k == n - 1 or cuts >> k & 1:
                if not valid[first][k]:
                    break
                runs, first = runs + 1, k + 1
        else:
            best = min(best, runs)
    return best


def _run_is_valid(run: Sequence[_Span], max_gap: int, limit: int) -> bool:
    """Whether one request may read this run of sorted signals (computed from scratch)."""
    start = run[0][0]
    if max(b for _, b, _ in run) - start > limit:
        return False
    return all(
        run[k + 1][0] - max(b for _, b, _ in run[: k + 1]) <= max_gap for k in range(len(run) - 1)
    )


def _sorted_spans(
    profile: ModbusProfile, signals: Sequence[ModbusSignal], table: Table, limit: int
) -> list[_Span]:
    spans: list[_Span] = []
    for signal in signals:
        if signal.table is not table:
            continue
        a = profile.protocol_address(signal)
        b = a + signal.count
        if a < 0 or b > MAX_REGISTER_ADDRESS + 1:
            raise ValueError(
                f"{signal.name!r}: {table.value} {a}..{b - 1} is outside 0..{MAX_REGISTER_ADDRESS}"
            )
        if b - a > limit:
            raise ValueError(
                f"{signal.name!r} spans {b - a} registers: more than one request's {limit}"
            )
        spans.append((a, b, signal))
    spans.sort(key=lambda span: (span[0], span[1]))
    return spans


def _unique(signals: Iterable[ModbusSignal]) -> list[ModbusSignal]:
    """Drop repeats of a signal; two different signals of one name are an error."""
    by_name: dict[str, ModbusSignal] = {}
    for signal in signals:
        seen = by_name.setdefault(signal.name, signal)
        if seen != signal:
            raise ValueError(f"two different signals named {signal.name!r}")
    return list(by_name.values())


def _check_gap(max_gap: int) -> None:
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, not {max_gap}")


def _check_limit(table: Table, limit: int) -> int:
    top = protocol_limit(table)
    if not 1 <= limit <= top:
        unit = "bits" if table.is_bit_table else "registers"
        raise ValueError(f"a {table.value} read takes 1..{top} {unit}, not {limit}")
    return limit


def split_request(
    profile: ModbusProfile, request: ReadRequest
) -> tuple[ReadRequest, ReadRequest] | None:
    """Two smaller reads of a request's signals, for a device that refused it.

    A strict device answers exception 2 when a read spans registers it does not map: the
    request is cut at its widest gap (the registers it read through); a request without
    gaps is cut between its middle signals. None when it holds one signal: that signal
    itself is refused.
    """
    spans = _sorted_spans(profile, request.signals, request.table, protocol_limit(request.table))
    if len(spans) < 2:
        return None
    cut, widest, end = len(spans) // 2, 0, spans[0][1]
    for k in range(1, len(spans)):
        gap = spans[k][0] - end
        if gap > widest:
            cut, widest = k, gap
        end = max(end, spans[k][1])
    return _request_of(request.table, spans[:cut]), _request_of(request.table, spans[cut:])


def _request_of(table: Table, spans: Sequence[_Span]) -> ReadRequest:
    start, end = spans[0][0], max(b for _, b, _ in spans)
    return ReadRequest(table, start, end - start, tuple(s for _, _, s in spans))
