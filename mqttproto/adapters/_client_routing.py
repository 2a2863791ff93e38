"""Where a client adapter's received messages go: :class:`MessageRouter`.

Part of :class:`~mqttproto.adapters._client_core.ClientCore`, split out:

- a response to a pending MQTT 5 request (its topic is the client's response
  topic and its correlation data one the client made) completes that request;
- otherwise every per-subscription queue whose filter matches gets it;
- a message no queue claimed goes to the ``on_message`` callback when one is
  set, else to the client's default queue.

Each queue is bounded; while one is full, :attr:`MessageRouter.reading_paused`
asks the adapter to stop reading from the server (see :class:`MessageQueue`).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from ..events import ConnectionAccepted, MessageReceived
from ._client_types import Completion, MessageQueue

__all__ = ["MessageRouter"]


class MessageRouter:
    """The queues, the ``on_message`` callback and the pending requests of one client.

    :param max_queued_messages: the bound of the default queue, and of a
        per-subscription queue made without its own.
    :param rng: gives the random prefix of the correlation data.
    """

    def __init__(self, max_queued_messages: int, rng: _random.Random) -> None:
        self.max_queued_messages = max_queued_messages
        self.default_queue = MessageQueue(None, max_queued_messages)
        self.default_queue.on_space = self._queue_has_space
        self.filtered: list[MessageQueue] = []
        #: Instead of the default queue, unclaimed messages go here when set.
        self.on_message: Callable[[MessageReceived], object] | None = None
        #: Called when reading may resume after a pause (set by the core).
        self.resume_reading: Callable[[], object] | None = None
        self._response_topic: str | None = None
        self._requests: dict[bytes, Completion[MessageReceived]] = {}
        self._request_counter = 0
        self._request_prefix = rng.getrandbits(64).to_bytes(8, "big")

    # -- consumers ---------------------------------------------------------------

    @property
    def reading_paused(self) -> bool:
        """Whether a consumer's queue is full: stop reading until it has room."""
        if self.on_message is None and self.default_queue.full:
            return True
        return any(queue.full for queue in self.filtered)

    def _queue_has_space(self) -> None:
        if not self.reading_paused and self.resume_reading is not None:
            self.resume_reading()

    def add_queue(self, topic_filter: str | None, maxsize: int | None) -> MessageQueue:
        """A queue of the messages matching ``topic_filter`` (claimed before
        the default queue sees them)."""
        queue = MessageQueue(topic_filter, maxsize or self.max_queued_messages)
        queue.on_space = self._queue_has_space
        self.filtered.append(queue)
        return queue

    def remove_queue(self, queue: MessageQueue) -> None:
        if queue in self.filtered:
            self.filtered.remove(queue)
            queue.close()
            self._queue_has_space()

    def route(self, message: MessageReceived) -> None:
        correlation = message.correlation_data
        if correlation is not None and message.topic == self._response_topic:
            request = self._requests.pop(correlation, None)
            if request is not None:
                request.set_result(message)
                return
        claimed = False
        for queue in self.filtered:
            if queue.matches(message.topic):
                queue.put(message)
                claimed = True
        if claimed:
            return
        if self.on_message is not None:
            self.on_message(message)
        else:
            self.default_queue.put(message)

    # -- request/response --------------------------------------------------------

    def response_topic(self, accepted: ConnectionAccepted | None, client_id: str) -> str:
        """``<response information>/responses`` when the server offered
        response information in CONNACK, else ``<client id>/responses``;
        chosen once."""
        if self._response_topic is None:
            info = accepted.response_information if accepted is not None else None
            base = info.rstrip("/") if info else (client_id or "mqttproto")
            self._response_topic = f"{base}/responses"
        return self._response_topic

    def open_request(self) -> tuple[bytes, Completion[MessageReceived]]:
        """Fresh correlation data, and the completion its response completes."""
        self._request_counter += 1
        correlation = self._request_prefix + self._request_counter.to_bytes(8, "big")
        completion: Completion[MessageReceived] = Completion()
        self._requests[correlation] = completion
        return correlation, completion

    def cancel_request(self, correlation: bytes) -> None:
        self._requests.pop(correlation, None)

    # -- the end -----------------------------------------------------------------

    def close(self, error: BaseException, *, clean: bool) -> None:
        """The client is finished: pending requests get *error*; queues end
        (normally if *clean*, else with *error*)."""
        requests = list(self._requests.values())
        self._requests.clear()
        for request in requests:
            request.set_error(error)
        for queue in (self.default_queue, *self.filtered):
            queue.close(None if clean else error)
