"""A typed InfluxQL target for grafana-foundation-sdk, which has no InfluxDB builder.

The model follows Grafana's `InfluxQuery` (public/app/plugins/datasource/influxdb/
types.ts) for raw InfluxQL: the query text goes as written, Grafana expands the
template variables and macros. It is registered as the `influxdb` dataquery variant so
`Dashboard.from_json` decodes our targets back into this class, not an untyped bag.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "facility-influxdb"
DATASOURCE_NAME = "Facility InfluxDB"

ResultFormat = typing.Literal["time_series", "table", "logs"]


def datasource_ref() -> dashboard.DataSourceRef:
    return dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQuery(cogvariants.Dataquery):
    """One raw InfluxQL target (also the target of an annotation query)."""

    # Declared like the SDK's models' fields, so dashboards/validate.py checks them.
    ref_id: str
    query: str
    result_format: ResultFormat
    alias: str | None
    hide: bool | None
    from_annotations: bool | None
    text_column: str | None
    tags_column: str | None
    title_column: str | None

    def __init__(
        self,
        ref_id: str = "",
        query: str = "",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        hide: bool | None = None,
        from_annotations: bool | None = None,
        text_column: str | None = None,
        tags_column: str | None = None,
        title_column: str | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.from_annotations = from_annotations
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": datasource_ref(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        optional = {
            "alias": self.alias,
            "hide": self.hide,
            "fromAnnotations": self.from_annotations,
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "titleColumn": self.title_column,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        if data.get("rawQuery") is not True:
            raise ValueError(f"target {data.get('refId')!r}: only raw InfluxQL is generated")
        return cls(
            ref_id=data.get("refId", ""),
            query=data["query"],
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            hide=data.get("hide"),
            from_annotations=data.get("fromAnnotations"),
            text_column=data.get("textColumn"),
            tags_column=data.get("tagsColumn"),
            title_column=data.get("titleColumn"),
        )


class InfluxQL(cogbuilder.Builder[InfluxQuery]):
    """Builder in the SDK's style: `InfluxQL(q).ref_id("A").alias("$tag_asset")`."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQuery(query=query)

    def build(self) -> InfluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> typing.Self:
        self._internal.alias = alias
        return self

    def format(self, result_format: ResultFormat) -> typing.Self:
        self._internal.result_format = result_format
        return self


class InfluxAnnotationQuery(dashboard.AnnotationQuery):
    """An annotation read from InfluxDB. The SDK's `AnnotationTarget` only knows the
    built-in Grafana source, so the InfluxQL target is kept here, in the shape Grafana's
    InfluxDB plugin stores after its own migration (`fromAnnotations`, the columns)."""

    influx_target: InfluxQuery | None = None

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        if self.influx_target is not None:
            payload["target"] = self.influx_target
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        plain = {k: v for k, v in data.items() if k != "target"}
        made = super().from_json(plain)
        if "target" in data:
            made.influx_target = InfluxQuery.from_json(data["target"])
        return made


class InfluxAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    def __init__(self, name: str, query: str) -> None:
        target = InfluxQuery(ref_id="Anno", query=query, from_annotations=True)
        self._internal = InfluxAnnotationQuery(name=name, datasource=datasource_ref())
        self._internal.influx_target = target

    def build(self) -> InfluxAnnotationQuery:
        return self._internal

    def color(self, color: str) -> typing.Self:
        self._internal.icon_color = color
        return self

    def columns(self, text: str, tags: str, title: str = "") -> typing.Self:
        target = self._internal.influx_target
        assert target is not None  # set in __init__
        target.text_column, target.tags_column = text, tags
        target.title_column = title or None
        return self


def register() -> None:
    """Let the SDK decode `influxdb` targets into InfluxQuery (round trips, tests)."""
    config = cogruntime.DataqueryConfig(DATASOURCE_TYPE, InfluxQuery.from_json)
    cogruntime.register_dataquery_variant(config)
