# Type stub for the compiled twin of the codec (mqttproto/_codec_c.pyx).
# The signatures are those of the pure-Python reference, mqttproto._codec_py.

from . import _encode_server
from .enums import PacketType, ProtocolVersion, ReasonCode
from .packets import Packet, PublishPacket

__all__ = [
    "PacketReader",
    "PreparedPublish",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "encode_publish_split",
    "prepare_publish",
]

def decode_packet(
    data: bytes,
    *,
    version: ProtocolVersion,
    max_user_properties: int | None = None,
    max_user_property_bytes: int | None = None,
    max_subscription_identifiers: int | None = None,
) -> Packet: ...
def encode_packet(packet: Packet, *, version: ProtocolVersion) -> bytes: ...
def encode_ack(
    packet_type: PacketType,
    packet_id: int,
    reason_code: ReasonCode | int = 0,
    *,
    version: ProtocolVersion,
) -> bytes: ...
def encode_publish_split(
    packet: PublishPacket, *, version: ProtocolVersion
) -> tuple[bytes, bytes]: ...
def prepare_publish(packet: PublishPacket, version: ProtocolVersion) -> PreparedPublish: ...
def _use_compiled_constructors(on: bool) -> bool: ...

class PacketReader:
    def __init__(
        self,
        *,
        version: ProtocolVersion | None = None,
        max_packet_size: int | None = None,
        max_user_properties: int | None = None,
        max_user_property_bytes: int | None = None,
        max_subscription_identifiers: int | None = None,
    ) -> None: ...
    @property
    def version(self) -> ProtocolVersion | None: ...
    @property
    def buffered(self) -> int: ...
    @property
    def incomplete_size(self) -> int: ...
    def feed(self, data: bytes) -> list[Packet]: ...

class PreparedPublish(_encode_server.PreparedPublish):
    def __init__(self, packet: PublishPacket, *, version: ProtocolVersion) -> None: ...
