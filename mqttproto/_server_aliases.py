"""The topic aliases a server connection chooses for what it sends:
:class:`ServerAliases`, a mixin of :class:`~._server_flows.ServerFlows`.

With ``ServerConfig.auto_topic_alias`` the connection gives topics it sends
often an alias within the client's Topic Alias Maximum, so that the next
PUBLISH packets of the topic go with an empty topic name (MQTT 5.0 section
3.3.2.3.4). Aliases belong to one network connection [MQTT-3.3.2-7]; a
message kept for a resend keeps its full topic. A
:class:`~mqttproto.codec.PreparedPublish` shared by a fan-out has one
aliased form per ``(alias, send_topic)``, shared by every connection that
uses that alias for the topic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import attrs

from .codec import PreparedPublish
from .config import ServerConfig
from .packets import Packet, PublishPacket

__all__ = ["ServerAliases"]


class ServerAliases:
    """The topic aliases of :class:`~mqttproto.server.ServerConnection`'s output."""

    if not TYPE_CHECKING:
        # ServerConnection declares the slots; a mixin without __slots__
        # would give every connection a __dict__ and a weakref slot (40
        # bytes). Hidden from mypy, which would take the mixin's writes to
        # those slots for writes to names outside its own empty __slots__.
        __slots__ = ()

    config: ServerConfig
    _max_out: int
    _alias_limit: int
    _aliases_out: OrderedDict[str, int] | None
    _alias_candidates: OrderedDict[str, None] | None

    if TYPE_CHECKING:

        def _encode(self, packet: Packet) -> bytes: ...

    def _alias_prepared(self, prepared: PreparedPublish) -> PreparedPublish:
        """``prepared`` with a topic alias of this connection's, if it takes one
        (a form shared by every connection that uses the same alias)."""
        packet = prepared.packet
        topic = packet.topic
        if len(topic) < self.config.auto_topic_alias_min_length or packet.topic_alias is not None:
            return prepared
        aliases = self._aliases_out
        if aliases is not None:
            # _alias_for's common case inlined: the topic has its alias.
            alias = aliases.get(topic)
            if alias is not None:
                aliases.move_to_end(topic)
                return prepared.with_topic_alias(alias, send_topic=False)
        # Setting an alias adds 3 to 5 bytes (the property, and the lengths).
        choice = self._alias_for(topic, prepared.size + 5 <= self._max_out)
        if choice is None:
            return prepared
        return prepared.with_topic_alias(choice[0], send_topic=choice[1])

    def _aliased(self, packet: PublishPacket, data: bytes) -> bytes:
        """The wire form of ``packet`` with a topic alias, if it takes one."""
        topic = packet.topic
        if len(topic) < self.config.auto_topic_alias_min_length or packet.topic_alias is not None:
            return data
        choice = self._alias_for(topic, len(data) + 5 <= self._max_out)
        if choice is None:
            return data
        alias, send_topic = choice
        return self._encode(
            attrs.evolve(packet, topic=topic if send_topic else "", topic_alias=alias)
        )

    def _alias_for(self, topic: str, may_add: bool) -> tuple[int, bool] | None:
        """The alias to send ``topic`` with, and whether the topic goes with it
        (the alias is being set); None: sent plain. ``may_add``: whether the
        packet may grow by setting an alias (the client's Maximum Packet Size).

        The policy (``ServerConfig.auto_topic_alias``): a topic with an
        alias uses it (sent with an empty topic name, MQTT 5.0 section
        3.3.2.3.4); a new topic takes the next free alias; when all are
        taken, a topic sent twice lately takes the least recently used
        alias, which is sent with the topic to redefine it, and a topic seen
        once does not. Aliases are 1 to the smaller of the client's Topic
        Alias Maximum and ``auto_topic_alias_limit`` [MQTT-3.3.2-8]
        [MQTT-3.3.2-11], and belong to this network connection only
        [MQTT-3.3.2-7].
        """
        aliases = self._aliases_out
        if aliases is None:
            aliases = self._aliases_out = OrderedDict()
        alias = aliases.get(topic)
        if alias is not None:
            aliases.move_to_end(topic)
            return alias, False
        if not may_add:
            return None
        if len(aliases) < self._alias_limit:
            alias = aliases[topic] = len(aliases) + 1
            return alias, True
        seen = self._alias_candidates
        if seen is None:
            seen = self._alias_candidates = OrderedDict()
        if topic in seen:
            del seen[topic]
            _, alias = aliases.popitem(last=False)
            aliases[topic] = alias
            return alias, True
        seen[topic] = None
        if len(seen) > self._alias_limit:
            seen.popitem(last=False)
        return None
