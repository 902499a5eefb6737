"""Rasa's socket.io output for the website widget: text as shown-as-written markdown,
every frame of a conversation event tagged so that its delivery can be confirmed.

The frames are Rasa's own (``SocketIOOutput``: text parts split on blank lines,
buttons as ``quick_replies`` on the last part, images and attachments as
``attachment``, custom JSON as given). With ``tagged`` (the channel's mailbox is on),
each frame of a bot event (a ``send_response`` call, which carries the event's
``timestamp``) gets a ``TAG_KEY`` entry: the event's timestamp, whether the frame is
the event's last and whether it is a catch-up copy. ``channels.widget_mailbox`` takes
it off before the frame leaves (the widget reads a frame by its exact set of keys).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.core.channels.socketio import SocketIOOutput

from channels.widget_text import widget_parts

TAG_KEY = "_widget_delivery"


class WidgetOutput(SocketIOOutput):
    """``SocketIOOutput`` with markdown-safe text and event-tagged frames."""

    def __init__(self, sio: Any, bot_message_evt: Text, tagged: bool = False, replay: bool = False) -> None:
        super().__init__(sio, bot_message_evt)
        self.tagged, self.replay = tagged, replay
        self._frames: Optional[List[Dict[Text, Any]]] = None

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """Send one bot event's frames, the last one marked as the event's end."""
        frames: List[Dict[Text, Any]] = []
        # Rasa's dispatch below never suspends (``_send_message`` only collects), so
        # two events sent through one instance cannot mix their frames.
        self._frames = frames
        try:
            await super().send_response(recipient_id, dict(message))
        finally:
            self._frames = None
        timestamp = message.get("timestamp")
        for number, frame in enumerate(frames, start=1):
            if "custom" in frame:
                await self.sio.emit(self.bot_message_evt, **frame["custom"])
                continue
            if self.tagged and timestamp is not None:
                tag = {"timestamp": timestamp, "final": number == len(frames), "replay": self.replay}
                frame = {**frame, TAG_KEY: tag}
            await self.sio.emit(self.bot_message_evt, frame, room=recipient_id)

    async def _send_message(self, socket_id: Text, response: Any) -> None:
        if self._frames is not None:
            self._frames.append(response)
        else:
            await super()._send_message(socket_id, response)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        """Each blank-line separated part as a message of its own, lines kept."""
        for part in widget_parts(text):
            await self._send_message(recipient_id, {"text": part})

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any) -> None:
        """The text's parts, the buttons as quick replies on the last one."""
        messages: List[Dict[Text, Any]] = [{"text": part, "quick_replies": []} for part in widget_parts(text)]
        if not messages:
            messages = [{"text": "", "quick_replies": []}]
        messages[-1]["quick_replies"] = [
            {"content_type": "text", "title": button["title"], "payload": button["payload"]} for button in buttons
        ]
        for message in messages:
            await self._send_message(recipient_id, message)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        """Custom JSON as Rasa sends it (its keys are ``emit`` arguments), in its turn."""
        json_message.setdefault("room", recipient_id)
        if self._frames is not None:
            self._frames.append({"custom": json_message})
        else:
            await self.sio.emit(self.bot_message_evt, **json_message)
