"""Device profiles: what a device type exposes, described as data (EdgeX style).

One YAML file per device type. A Modbus profile maps each signal to a table, address,
data type and byte order; an MQTT profile maps each signal to a topic pattern and a
JSON path. The gateway decodes and the simulators encode through the same profile.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from facility.codec import ByteOrder, DataType, register_count
from facility.kind import Role
from facility.simspec import SignalSim


class Table(StrEnum):
    HOLDING = "holding"  # function 3 read, 6/16 write
    INPUT = "input"  # function 4
    COIL = "coil"  # function 1 read, 5/15 write
    DISCRETE = "discrete"  # function 2

    @property
    def is_bit_table(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


MAX_REGISTER_ADDRESS = 0xFFFF


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusSignal(Strict):
    """One value read from a Modbus device."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    unit: str = ""
    table: Table
    address: int = Field(ge=0, le=0x10000)
    address_base: Literal[0, 1] | None = None  # None: the profile's default
    type: DataType
    length: int = Field(default=0, ge=0, le=123)  # registers, strings only
    bit: int | None = Field(default=None, ge=0, le=15)  # bit-in-register only
    byte_order: ByteOrder | None = None  # None: the profile's default
    scale: float = 1.0
    offset: float = 0.0
    enum: dict[int, str] | None = None
    access: Literal["r", "rw"] = "r"
    deadband: float | None = Field(default=None, ge=0)  # report-by-exception threshold
    role: Role | None = None  # what it means to boards and reports; None: the kind's
    simulate: SignalSim | None = None  # how a simulator without physics makes it up

    @model_validator(mode="after")
    def _shape(self) -> ModbusSignal:
        bit_table = self.table.is_bit_table
        if bit_table and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table.value} holds single bits: type must be bool")
        if not bit_table and self.type is DataType.BOOL:
            raise ValueError("type bool needs table coil or discrete (use type bit in a register)")
        if self.type is DataType.BIT and self.bit is None:
            raise ValueError("type bit needs `bit` (0..15)")
        if self.type is not DataType.BIT and self.bit is not None:
            raise ValueError("`bit` is only for type bit")
        if self.type is DataType.STRING and self.length == 0:
            raise ValueError("type string needs `length` (registers)")
        if self.type is not DataType.STRING and self.length:
            raise ValueError("`length` is only for type string")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def count(self) -> int:
        return register_count(self.type, self.length)


class MqttSignal(Strict):
    """One value taken from a JSON message a device publishes."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    unit: str = ""
    topic: str  # key into the profile's `topics`
    json_path: str = Field(pattern=r"^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$")
    type: Literal["float", "int", "bool", "string"]
    map: dict[str, bool | int | float] | None = None  # text states -> values
    scale: float = 1.0
    offset: float = 0.0
    enum: dict[int, str] | None = None  # what a code means (fault codes), for messages
    deadband: float | None = Field(default=None, ge=0)  # report-by-exception threshold
    role: Role | None = None  # what it means to boards and reports; None: the kind's
    simulate: SignalSim | None = None  # how a simulator without physics makes it up

    @model_validator(mode="after")
    def _codes_are_ints(self) -> MqttSignal:
        if self.enum is not None and self.type != "int":
            raise ValueError("`enum` describes integer codes: type must be int")
        return self


class _ProfileHead(Strict):
    """What every device profile says of itself; each protocol narrows `protocol`."""

    profile: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    protocol: str
    manufacturer: str = ""
    model: str = ""


class ModbusProfile(_ProfileHead):
    protocol: Literal["modbus"]
    byte_order: ByteOrder = ByteOrder.ABCD
    address_base: Literal[0, 1] = 0
    # How the device answers a read spanning registers this map does not list: real
    # devices often refuse it with exception 2 ("refuse"); the simulator follows this.
    unmapped_registers: Literal["answer", "refuse"] = "answer"
    signals: list[ModbusSignal] = Field(min_length=1)

    def base_of(self, signal: ModbusSignal) -> int:
        return self.address_base if signal.address_base is None else signal.address_base

    def order_of(self, signal: ModbusSignal) -> ByteOrder:
        return signal.byte_order or self.byte_order

    def protocol_address(self, signal: ModbusSignal) -> int:
        """Address on the wire (0-based PDU address) after applying the address base."""
        return signal.address - self.base_of(signal)

    def signal(self, name: str) -> ModbusSignal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)


class MqttTimestamp(Strict):
    """Where a device's message says when it was measured, and in what unit."""

    json_path: str = Field(pattern=r"^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$")
    unit: Literal["ms", "s", "iso8601"]  # epoch ms, epoch s, or text with a UTC offset


class MqttProfile(_ProfileHead):
    protocol: Literal["mqtt"]
    # topic patterns may use {site}, {station} and {asset}
    topics: dict[str, str] = Field(min_length=1)
    signals: list[MqttSignal] = Field(min_length=1)
    # the device's own clock; without it (or when absurd) the gateway stamps on receipt
    timestamp: MqttTimestamp | None = None

    @model_validator(mode="after")
    def _topics_known(self) -> MqttProfile:
        for s in self.signals:
            if s.topic not in self.topics:
                raise ValueError(f"signal {s.name!r} uses unknown topic {s.topic!r}")
        return self

    def topic_for(self, key: str, site: str, station: str, asset: str) -> str:
        return self.topics[key].format(site=site, station=station, asset=asset)


DeviceProfile = Annotated[ModbusProfile | MqttProfile, Field(discriminator="protocol")]
