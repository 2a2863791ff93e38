"""mqttproto: a sans-IO implementation of MQTT 3.1, 3.1.1 and 5.0.

The public names are re-exported here; see the modules for details.
"""

from __future__ import annotations

from ._version import VERSION
from .broker import Broker
from .client import ClientConnection
from .codec import (
    PacketReader,
    PreparedPublish,
    codec_implementation,
    decode_packet,
    encode_ack,
    encode_packet,
)
from .config import BrokerConfig, ClientConfig, ServerConfig
from .enums import PacketType, PropertyId, ProtocolVersion, QoS, ReasonCode, RetainHandling
from .errors import (
    ClientIdentifierNotValid,
    ConnectRefusal,
    LocalProtocolError,
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    ReceiveMaximumExceeded,
    RemoteProtocolError,
    TopicAliasInvalid,
    UnsupportedProtocolVersion,
)
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PingRespPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)
from .server import ServerConnection, ServerSession
from .store import MemoryStore, SessionStore, SQLiteStore, StoreError
from .topics import (
    SharedSubscription,
    parse_shared_subscription,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

__version__ = VERSION

__all__ = [
    "AuthPacket",
    "Broker",
    "BrokerConfig",
    "ClientConfig",
    "ClientConnection",
    "ClientIdentifierNotValid",
    "ConnAckPacket",
    "ConnectPacket",
    "ConnectRefusal",
    "DisconnectPacket",
    "LocalProtocolError",
    "MQTTError",
    "MalformedPacket",
    "MemoryStore",
    "Packet",
    "PacketReader",
    "PacketTooLarge",
    "PacketType",
    "PingReqPacket",
    "PingRespPacket",
    "PreparedPublish",
    "PropertyId",
    "ProtocolError",
    "ProtocolVersion",
    "PubAckPacket",
    "PubCompPacket",
    "PubRecPacket",
    "PubRelPacket",
    "PublishPacket",
    "QoS",
    "ReasonCode",
    "ReceiveMaximumExceeded",
    "RemoteProtocolError",
    "RetainHandling",
    "SQLiteStore",
    "ServerConfig",
    "ServerConnection",
    "ServerSession",
    "SessionStore",
    "SharedSubscription",
    "StoreError",
    "SubAckPacket",
    "SubscribePacket",
    "Subscription",
    "TopicAliasInvalid",
    "UnsubAckPacket",
    "UnsubscribePacket",
    "UnsupportedProtocolVersion",
    "Will",
    "codec_implementation",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "parse_shared_subscription",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]
