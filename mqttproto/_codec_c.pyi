# Type stub for the compiled twin of the codec (mqttproto/_codec_c.pyx).
# The signatures are those of the pure-Python reference, mqttproto._codec_py.

from .enums import ProtocolVersion
from .packets import Packet

__all__ = ["PacketReader", "decode_packet", "encode_packet"]

def decode_packet(
    data: bytes,
    *,
    version: ProtocolVersion,
    max_user_properties: int | None = None,
    max_user_property_bytes: int | None = None,
    max_subscription_identifiers: int | None = None,
) -> Packet: ...
def encode_packet(packet: Packet, *, version: ProtocolVersion) -> bytes: ...

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
    def feed(self, data: bytes) -> list[Packet]: ...
