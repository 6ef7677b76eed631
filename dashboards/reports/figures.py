"""The numbers of the operations reports, from bucketed InfluxDB series.

Counters (run hours, starts, energy, gate passages) are differenced, never read as
absolute values: a device replaced or reset starts again from zero, a poll may be lost,
a bad read may glitch. Rates (flow, power) are integrated over time, with short gaps
bridged by the last value and the coverage reported.

The built-in kinds with physics have figures of their own (pumps, tanks, transformers,
car parks). Every other kind is counted by its signals' roles (facility/kinds/): water
from a volume totaliser, else its integrated flow; energy from an energy counter, else
its integrated power; run hours from the time its `running` signal is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dashboards.reports.data import AssetPath, Influx, Samples, Window
from dashboards.reports.periods import Period
from facility.config import SiteConfig
from facility.kind import Role, report_factor
from facility.site import MODELLED_KINDS, Asset, AssetKind, Station

HOUR_MS = 3_600_000
MAX_BRIDGED_GAP_MS = 10 * 60_000  # a longer silence is unknown, not "the same as before"
COUNTER_LOOKBACK_MS = 6 * HOUR_MS  # where to look for the reading before the period


# -- counters and integrals ----------------------------------------------------------


def counter_increase(samples: Samples, start_ms: int, end_ms: int) -> float | None:
    """How much a counter went up from the last reading before `start_ms` (or the first
    inside) to the last reading at or before `end_ms`. A drop that the next reading
    undoes is a glitch and skipped; a drop that stays is a reset, after which the
    counter counted up from zero. None if there is no reading at all."""
    before = [s for s in samples if s[0] < start_ms]
    inside = [s for s in samples if start_ms <= s[0] <= end_ms]
    values = [v for _, v in ([before[-1]] if before else []) + inside]
    if not values:
        return None
    total, last = 0.0, values[0]
    for i, value in enumerate(values[1:], start=1):
        if value >= last:
            total, last = total + value - last, value
        elif i + 1 < len(values) and values[i + 1] >= last:
            continue  # a glitch: the counter is back next reading
        else:
            total, last = total + value, value
    return total


@dataclass(frozen=True)
class Integral:
    total: float  # value × hours
    covered_ms: int  # time with a reading in its bucket
    bridged_ms: int  # time held at the last value across a short gap

    def coverage_pct(self, period_ms: int) -> float:
        return 100.0 * self.covered_ms / period_ms if period_ms else 0.0


def integrate(samples: Samples, start_ms: int, end_ms: int, bucket_ms: int) -> Integral:
    """∫ value dt in value·hours, each bucket's mean holding for its bucket and, across a
    gap of at most MAX_BRIDGED_GAP_MS, until the next bucket."""
    inside = [(t, v) for t, v in samples if start_ms <= t < end_ms]
    total, covered, bridged = 0.0, 0, 0
    for i, (t, v) in enumerate(inside):
        next_t = inside[i + 1][0] if i + 1 < len(inside) else end_ms
        own = min(bucket_ms, next_t - t, end_ms - t)
        gap = next_t - t - own
        held = own + (gap if 0 < gap <= MAX_BRIDGED_GAP_MS else 0)
        total += v * held / HOUR_MS
        covered += own
        bridged += held - own
    return Integral(total, covered, bridged)


def extreme(
    samples: Samples, start_ms: int, end_ms: int, highest: bool
) -> tuple[int, float] | None:
    inside = [(t, v) for t, v in samples if start_ms <= t < end_ms]
    if not inside:
        return None
    pick = max if highest else min
    return pick(inside, key=lambda s: s[1])


# -- what the reports show -----------------------------------------------------------


@dataclass
class PumpFigures:
    path: AssetPath
    name: str
    status: str
    run_hours: float | None
    starts: int | None
    energy_kwh: float | None  # ∫ power_kw dt
    water_m3: float | None  # ∫ flow_m3h dt
    coverage_pct: float


@dataclass
class TankFigures:
    path: AssetPath
    name: str
    height_m: float | None
    low: tuple[int, float] | None  # (when, level m)
    high: tuple[int, float] | None


@dataclass
class MeterFigures:
    """An asset of a kind without figures of its own, counted by its signals' roles."""

    path: AssetPath
    name: str
    kind: str  # the kind's display name
    water_m3: float | None
    water_source: str  # the signal it comes from, and how ("" if none)
    energy_kwh: float | None
    energy_source: str
    run_hours: float | None


@dataclass
class StationFigures:
    site: str
    station: str
    name: str
    pumps: list[PumpFigures]
    tanks: list[TankFigures]
    energy_kwh: float | None
    energy_source: str  # "transformer meter", "energy meters", "pump drives", or ""
    kva: float | None
    peak_load: tuple[int, float] | None  # (when, load %)
    meters: list[MeterFigures] = field(default_factory=list)

    @property
    def run_hours(self) -> float:
        return sum(p.run_hours or 0.0 for p in self.pumps) + sum(
            m.run_hours or 0.0 for m in self.meters
        )

    @property
    def starts(self) -> int:
        return sum(p.starts or 0 for p in self.pumps)

    @property
    def metered(self) -> bool:
        """Whether a meter (not the pumps' own flow) says what the station delivered."""
        return any(m.water_m3 is not None for m in self.meters)

    @property
    def water_m3(self) -> float:
        if self.metered:  # a meter on the outlet counts what the pumps' estimates sum
            return sum(m.water_m3 or 0.0 for m in self.meters)
        return sum(p.water_m3 or 0.0 for p in self.pumps)


@dataclass
class LotFigures:
    path: AssetPath
    name: str
    spaces: int | None
    peak: tuple[int, float] | None  # (when, occupied)
    vehicles_in: int | None
    vehicles_out: int | None

    @property
    def peak_pct(self) -> float | None:
        if self.peak is None or not self.spaces:
            return None
        return 100.0 * self.peak[1] / self.spaces

    @property
    def turnover(self) -> float | None:
        """Vehicles in per space: how many times each space was used, on average."""
        if self.vehicles_in is None or not self.spaces:
            return None
        return self.vehicles_in / self.spaces


@dataclass
class Series:
    """The bucketed series one report reads, by measurement and aggregate."""

    bucket_ms: int
    data: dict[str, dict[AssetPath, Samples]] = field(default_factory=dict)

    def of(self, name: str, path: AssetPath) -> Samples:
        return self.data.get(name, {}).get(path, [])


# (name, measurement, aggregate, looks back before the period: a counter)
QUERIES: tuple[tuple[str, str, str, bool], ...] = (
    ("run_hours", "pump", 'first("run_hours"), last("run_hours")', True),
    ("starts", "pump", 'first("starts"), last("starts")', True),
    ("flow", "pump", 'mean("flow_m3h")', False),
    ("power", "pump", 'mean("power_kw")', False),
    ("energy", "transformer", 'first("energy_kwh"), last("energy_kwh")', True),
    ("load", "transformer", 'max("load_pct")', False),
    ("level_min", "tank", 'min("level_m")', False),
    ("level_max", "tank", 'max("level_m")', False),
    ("level", "tank", 'mean("level_m")', False),
    ("occupied", "parking_lot", 'max("occupied")', False),
    ("in", "barrier_gate", 'first("vehicles_in_total"), last("vehicles_in_total")', True),
    ("out", "barrier_gate", 'first("vehicles_out_total"), last("vehicles_out_total")', True),
)


# Kinds whose figures are their own (above); the rest are counted by role.
OWN_FIGURES = MODELLED_KINDS
COUNTED_ROLES = frozenset(
    {Role.FLOW, Role.POWER, Role.VOLUME_COUNTER, Role.ENERGY_COUNTER, Role.RUNNING}
)
_COUNTERS = frozenset({Role.VOLUME_COUNTER, Role.ENERGY_COUNTER})


def role_series(config: SiteConfig) -> dict[tuple[str, str], Role]:
    """(kind, signal) → role of every signal the reports count by role."""
    out: dict[tuple[str, str], Role] = {}
    for ref in config.assets():
        if ref.asset.kind in OWN_FIGURES:
            continue
        for signal, role in config.roles_of(ref.asset).items():
            if role in COUNTED_ROLES:
                out[(ref.asset.kind, signal)] = role
    return out


def _role_aggregate(signal: str, role: Role) -> str:
    if role in _COUNTERS:
        return f'first("{signal}"), last("{signal}")'
    if role is Role.RUNNING:
        return f'max("{signal}")'  # a boolean: true if it ran at all in the bucket
    return f'mean("{signal}")'


def read_series(
    influx: Influx, period: Period, bucket_ms: int, config: SiteConfig | None = None
) -> Series:
    series = Series(bucket_ms)
    # Local-clock buckets: an hour's mean must not straddle the local midnight.
    zone = period.tz.key
    for name, measurement, aggregate, counter in QUERIES:
        start = period.start_ms - (COUNTER_LOOKBACK_MS if counter else 0)
        window = Window(start, period.end_ms)
        series.data[name] = influx.per_asset(measurement, aggregate, window, bucket_ms, tz=zone)
    for (kind, signal), role in (role_series(config) if config else {}).items():
        start = period.start_ms - (COUNTER_LOOKBACK_MS if role in _COUNTERS else 0)
        window = Window(start, period.end_ms)
        aggregate = _role_aggregate(signal, role)
        found = influx.per_asset(kind, aggregate, window, bucket_ms, tz=zone)
        series.data[role_key(kind, signal)] = found
    return series


def role_key(kind: str, signal: str) -> str:
    return f"{kind}.{signal}"


def _path(station_site: str, station: Station, asset: Asset) -> AssetPath:
    return (station_site, station.id, asset.id)


def pump_figures(series: Series, path: AssetPath, asset: Asset, period: Period) -> PumpFigures:
    start, end = period.start_ms, period.end_ms
    starts = counter_increase(series.of("starts", path), start, end)
    flow = integrate(series.of("flow", path), start, end, series.bucket_ms)
    power = integrate(series.of("power", path), start, end, series.bucket_ms)
    seen = bool(series.of("flow", path))
    return PumpFigures(
        path=path,
        name=asset.name or asset.id,
        status=asset.status.value,
        run_hours=counter_increase(series.of("run_hours", path), start, end),
        starts=None if starts is None else round(starts),
        energy_kwh=power.total if series.of("power", path) else None,
        water_m3=flow.total if seen else None,
        coverage_pct=flow.coverage_pct(end - start),
    )


def meter_figures(
    series: Series, path: AssetPath, asset: Asset, config: SiteConfig, period: Period
) -> MeterFigures | None:
    """Water, energy and run hours of one asset from its signals' roles (None: it has
    no signal the reports count)."""
    roles = {s: r for s, r in config.roles_of(asset).items() if r in COUNTED_ROLES}
    if not roles:
        return None
    span = (period.start_ms, period.end_ms)
    water, water_from = metered(series, path, asset, config, span, Role.VOLUME_COUNTER, Role.FLOW)
    energy, energy_from = metered(
        series, path, asset, config, span, Role.ENERGY_COUNTER, Role.POWER
    )
    hours, _ = metered(series, path, asset, config, span, Role.RUNNING)
    kind = config.kinds[asset.kind].name if asset.kind in config.kinds else asset.kind
    name = asset.name or asset.id
    return MeterFigures(path, name, kind, water, water_from, energy, energy_from, hours)


def metered(
    series: Series,
    path: AssetPath,
    asset: Asset,
    config: SiteConfig,
    span: tuple[int, int],
    *roles: Role,
) -> tuple[float | None, str]:
    """Over [start, end): the first signal of the first of `roles` that has data, as a
    counter's increase or a rate's integral in the reports' unit (m³, kWh, h), and which
    signal it came from."""
    start, end = span
    for role in roles:
        for signal in config.signals_with(asset, role):
            samples = series.of(role_key(asset.kind, signal), path)
            if not samples:
                continue
            factor = report_factor(role, config.unit_of(asset, signal)) or 1.0
            if role in _COUNTERS:
                increase = counter_increase(samples, start, end)
                if increase is not None:
                    return increase * factor, f"{signal} (counter)"
                continue
            total = integrate(samples, start, end, series.bucket_ms).total
            return total * factor, f"{signal} (integrated)"
    return None, ""


def tank_figures(series: Series, path: AssetPath, asset: Asset, period: Period) -> TankFigures:
    start, end = period.start_ms, period.end_ms
    return TankFigures(
        path=path,
        name=asset.name or asset.id,
        height_m=asset.ratings.height_m,
        low=extreme(series.of("level_min", path), start, end, highest=False),
        high=extreme(series.of("level_max", path), start, end, highest=True),
    )


def station_figures(
    series: Series,
    site: str,
    station: Station,
    period: Period,
    config: SiteConfig | None = None,
) -> StationFigures:
    pumps, tanks, meters = [], [], []
    energy: float | None = None
    source, kva, peak = "", None, None
    for asset in station.assets:
        path = _path(site, station, asset)
        if config is not None and asset.kind not in OWN_FIGURES:
            meter = meter_figures(series, path, asset, config, period)
            if meter is not None:
                meters.append(meter)
        elif asset.kind == AssetKind.PUMP:
            pumps.append(pump_figures(series, path, asset, period))
        elif asset.kind == AssetKind.TANK:
            tanks.append(tank_figures(series, path, asset, period))
        elif asset.kind == AssetKind.TRANSFORMER:
            kva = asset.ratings.kva
            energy = counter_increase(series.of("energy", path), period.start_ms, period.end_ms)
            source = "transformer meter" if energy is not None else ""
            peak = extreme(series.of("load", path), period.start_ms, period.end_ms, True)
    if energy is None and any(m.energy_kwh is not None for m in meters):
        energy = sum(m.energy_kwh or 0.0 for m in meters)
        source = "energy meters"
    if energy is None and any(p.energy_kwh is not None for p in pumps):
        # No transformer (a standby booster): the drives' own power is the best we have.
        energy = sum(p.energy_kwh or 0.0 for p in pumps)
        source = "pump drives"
    name = station.name or station.id
    return StationFigures(site, station.id, name, pumps, tanks, energy, source, kva, peak, meters)


def lot_figures(series: Series, site: str, station: Station, period: Period) -> list[LotFigures]:
    start, end = period.start_ms, period.end_ms
    gates = [a for a in station.assets if a.kind == AssetKind.BARRIER_GATE]

    def passages(name: str) -> int | None:
        counts = [
            counter_increase(series.of(name, _path(site, station, g)), start, end) for g in gates
        ]
        known = [c for c in counts if c is not None]
        return round(sum(known)) if known else None

    lots = []
    for asset in station.assets:
        if asset.kind != AssetKind.PARKING_LOT:
            continue
        path = _path(site, station, asset)
        peak = extreme(series.of("occupied", path), start, end, highest=True)
        spaces = asset.ratings.spaces
        lots.append(
            LotFigures(path, asset.name or asset.id, spaces, peak, passages("in"), passages("out"))
        )
    return lots


@dataclass
class SiteFigures:
    site: str
    name: str
    kind: str
    stations: list[StationFigures]
    lots: list[LotFigures]

    @property
    def water_m3(self) -> float:
        return sum(s.water_m3 for s in self.stations)

    @property
    def energy_kwh(self) -> float:
        return sum(s.energy_kwh or 0.0 for s in self.stations)


def site_figures(series: Series, config: SiteConfig, period: Period) -> list[SiteFigures]:
    out = []
    for site in config.sites:
        stations = [
            station_figures(series, site.id, st, period, config)
            for st in site.stations
            if any(a.kind in (AssetKind.PUMP, AssetKind.TANK) for a in st.assets)
            or any(a.kind not in OWN_FIGURES and config.roles_of(a) for a in st.assets)
        ]
        lots = [lot for st in site.stations for lot in lot_figures(series, site.id, st, period)]
        out.append(SiteFigures(site.id, site.name or site.id, site.kind, stations, lots))
    return out
