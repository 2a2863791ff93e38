"""Retained messages: one per topic, found by topic filter through a trie.

A SUBSCRIBE asks for every retained message its filter matches. Walking a
trie of the retained topics along the filter's levels costs what the filter
can match, not what is stored: an exact filter is one path; ``+`` fans out
over one level; ``#`` takes a whole subtree.

The messages a subscription gets are not gathered at once: :meth:`RetainedStore.walk`
is a cursor over the trie that the broker advances as the client takes them
(see :mod:`._feed`), and that tolerates the store changing meanwhile. Each
topic carries a serial number, the store's counter when a message was last
retained or routed on it, so that a cursor can tell the topics that changed
after it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..store import RetainedMessage
from ._router import Sub

__all__ = ["RetainedFeed", "RetainedStore"]


class _Node:
    __slots__ = ("children", "message", "owner", "serial", "size")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: RetainedMessage | None = None
        #: Bytes of the message's topic and payload (0 without a message).
        self.size = 0
        #: The client identifier that set the message (None: the broker).
        self.owner: str | None = None
        #: The store's serial when the topic last changed (see ``touch``).
        self.serial = 0


def _size(topic: str, payload: bytes) -> int:
    """What one retained message counts against ``max_retained_bytes``."""
    return len(topic.encode("utf-8", "surrogatepass")) + len(payload)


class RetainedStore:
    """The retained message of each topic (MQTT 5.0 section 3.3.1.3)."""

    __slots__ = ("_count", "_root", "_usage", "bytes", "serial")

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0
        #: Counts the changes: a message retained, or routed on a retained
        #: topic while someone watches (``touch``).
        self.serial = 0
        #: Topic and payload bytes of every retained message together.
        self.bytes = 0
        #: owner -> [messages, bytes] of the retained messages it set last.
        self._usage: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return self._count

    def get(self, topic: str) -> RetainedMessage | None:
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.message

    def sizes(self, topic: str, payload: bytes) -> tuple[int | None, int, str | None]:
        """``(size of the message retained for topic, or None; size of a new
        one; the owner of the retained one)``."""
        node: _Node | None = self._root
        for level in topic.split("/"):
            assert node is not None
            node = node.children.get(level)
            if node is None:
                break
        if node is None or node.message is None:
            return None, _size(topic, payload), None
        return node.size, _size(topic, payload), node.owner

    def usage(self, owner: str) -> tuple[int, int]:
        """``(messages, bytes)`` of the retained messages ``owner`` set last."""
        used = self._usage.get(owner)
        return (0, 0) if used is None else (used[0], used[1])

    def set(self, topic: str, message: RetainedMessage, owner: str | None = None) -> None:
        """Store ``message`` for ``topic``, replacing the previous one [MQTT-3.3.1-5];
        ``owner`` is the client that published it (None: the broker)."""
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if node.message is None:
            self._count += 1
        else:
            self._charge(node.owner, -1, -node.size)
        size = _size(topic, message.packet.payload)
        self.bytes += size - node.size
        node.size = size
        node.message = message
        node.owner = owner
        self.serial += 1
        node.serial = self.serial
        self._charge(owner, 1, size)

    def touch(self, topic: str) -> None:
        """A message on ``topic`` is being routed: a cursor started before now
        skips the topic's retained message, which that message supersedes."""
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return
            node = child
        if node.message is not None:
            self.serial += 1
            node.serial = self.serial

    def _charge(self, owner: str | None, count: int, size: int) -> None:
        if owner is None:
            return
        used = self._usage.get(owner)
        if used is None:
            used = self._usage[owner] = [0, 0]
        used[0] += count
        used[1] += size
        if not used[0]:
            del self._usage[owner]

    def delete(self, topic: str) -> bool:
        """Remove the retained message of ``topic`` [MQTT-3.3.1-6]; prune empty nodes."""
        node = self._root
        path: list[tuple[_Node, str]] = []
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if node.message is None:
            return False
        node.message = None
        self._count -= 1
        self.bytes -= node.size
        self._charge(node.owner, -1, -node.size)
        node.size = 0
        node.owner = None
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.message is not None or child.children:
                break
            del parent.children[level]
        return True

    def match(self, topic_filter: str) -> list[RetainedMessage]:
        """Every retained message whose topic ``topic_filter`` matches.

        Filters starting with a wildcard skip topics starting with ``$``
        [MQTT-4.7.2-1].
        """
        levels = topic_filter.split("/")
        depth = len(levels)
        found: list[RetainedMessage] = []
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, index = stack.pop()
            if index == depth:
                if node.message is not None:
                    found.append(node.message)
                continue
            level = levels[index]
            if level == "#":
                # '#' covers the parent level too: "a/#" matches "a".
                if index and node.message is not None:
                    found.append(node.message)
                self._subtree(node, found, skip_dollar=index == 0)
            elif level == "+":
                for name, child in node.children.items():
                    if index == 0 and name.startswith("$"):
                        continue
                    stack.append((child, index + 1))
            else:
                exact = node.children.get(level)
                if exact is not None:
                    stack.append((exact, index + 1))
        return found

    def walk(self, topic_filter: str) -> Iterator[_Node]:
        """The topics ``topic_filter`` matches, one at a time, as :meth:`match`
        finds them, for a cursor that is advanced over a long time.

        Yields trie nodes, each when it is reached: read its ``message``
        then (None: deleted meanwhile) and its ``serial``. The walk holds
        the nodes still to visit below those it went through (the children
        of each, 8 bytes a node), never the messages, and the store may
        change between two steps: a topic deleted before its turn yields a
        node without a message; one added under a part of the trie already
        walked is not reached (its serial is newer than the cursor, and it
        was routed to the subscription as it came).
        """
        levels = topic_filter.split("/")
        depth = len(levels)
        # Frames of nodes still to visit, each with the index of the filter
        # level its nodes match (-1: below a '#'); a frame is a list of
        # node references, taken from its end, so it shrinks as it goes.
        frames: list[tuple[int, list[_Node]]] = [(0, [self._root])]
        while frames:
            index, nodes = frames[-1]
            if not nodes:
                frames.pop()
                continue
            node = nodes.pop()
            if index < 0:
                if node.message is not None:
                    yield node
                if node.children:
                    # Reversed, so that children come out in the trie's order.
                    frames.append((-1, list(reversed(node.children.values()))))
                continue
            if index == depth:
                if node.message is not None:
                    yield node
                continue
            level = levels[index]
            if level == "#" or level == "+":
                if level == "#" and index and node.message is not None:
                    # '#' covers the parent level too: "a/#" matches "a".
                    yield node
                children = [
                    child
                    for name, child in reversed(node.children.items())
                    # [MQTT-4.7.2-1]: a leading wildcard skips '$' topics.
                    if not (index == 0 and name.startswith("$"))
                ]
                if children:
                    frames.append((-1 if level == "#" else index + 1, children))
            else:
                exact = node.children.get(level)
                if exact is not None:
                    frames.append((index + 1, [exact]))

    def _subtree(self, node: _Node, found: list[RetainedMessage], *, skip_dollar: bool) -> None:
        stack = [
            child
            for name, child in node.children.items()
            if not (skip_dollar and name.startswith("$"))
        ]
        while stack:
            current: _Node = stack.pop()
            if current.message is not None:
                found.append(current.message)
            stack.extend(current.children.values())

    def all(self) -> list[RetainedMessage]:
        """Every retained message, ``$`` topics included."""
        found: list[RetainedMessage] = []
        self._subtree(self._root, found, skip_dollar=False)
        return found


class RetainedFeed:
    """The retained messages still owed to one new subscription: a cursor
    over the store (:meth:`RetainedStore.walk`), advanced as the client
    takes them.

    ``start`` is the store's serial when the subscription was made: a topic
    whose serial is newer had a message routed to the subscription since,
    which supersedes its retained one.
    """

    __slots__ = ("filter", "nodes", "start", "sub")

    def __init__(self, store: RetainedStore, full_filter: str, sub: Sub[Any]) -> None:
        #: The subscription's filter as the client gave it (its key in the session).
        self.filter = full_filter
        #: The subscription the messages go out with (a replacement takes over).
        self.sub = sub
        self.start = store.serial
        self.nodes = store.walk(sub.topic_filter)
