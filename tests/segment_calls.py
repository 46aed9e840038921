"""Segment calls (the Segment spec's JSON, as the seed destination docs show them) for the
``format: segment`` tests, and what Amberflo must hold after the connector read them."""

from __future__ import annotations

from typing import Any

T = "2024-01-01T10:00:00.000Z"
T_MS = 1_704_103_200_000  # T in epoch ms


def track(
    msg: str, user: str, event: str, properties: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": msg,
        "userId": user,
        "event": event,
        "properties": properties or {},
        "timestamp": T,
        **extra,
    }


def identify(msg: str, user: str | None, traits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"type": "identify", "messageId": msg, "traits": traits, "timestamp": T}
    if user is not None:
        call["userId"] = user
    return {**call, **extra}


PAGE = {
    "type": "page",
    "messageId": "msg-page",
    "userId": "some_user_id",
    "name": "Home",
    "properties": {
        "title": "Welcome | Initech",
        "keywords": "paper,comedy",
        "search": "schrute farms",
        "referrer": "https://google.com",
        "path": "/home",
        "browser": "Chrome",
        "url": "https://segment.com",
    },
    "timestamp": T,
}
PAGE_DIMENSIONS = {  # the seed's expected ingest body for this page call
    "title": "Welcome _ Initech",
    "keywords": "paper,comedy",
    "search": "schrute farms",
    "referrer": "https:__google.com",
    "path": "_home",
    "browser": "Chrome",
    "url": "https:__segment.com",
}
SCREEN = {
    "type": "screen",
    "messageId": "msg-screen",
    "userId": "some_user_id",
    "name": "Home",
    "properties": {"title": "Welcome | Initech", "other": "not a screen dimension"},
    "sentAt": T,
}
TRACK = track("msg-track", "some_user_id", "ApiCalls", {"value": 2.0, "region": "us-west-2"})
IDENTIFY = identify(
    "msg-identify",
    "some_user_id",
    {
        "name": "John Doe",
        "email": "john.doe@email.com",
        "plan": "premium",
        "logins": 5,
        "phone": "650-769-3240",
        "username": "marakasina",
        "website": "example.com",
        "avatar": "https://s3.amazonaws.com/uifaces/faces/twitter/scottkclark/128.jpg",
    },
)
IDENTIFY_TRAITS = {  # the seed's PUT /customers traits, as text
    "plan": "premium",
    "logins": "5",
    "phone": "650-769-3240",
    "username": "marakasina",
    "website": "example.com",
    "avatar": "https:__s3.amazonaws.com_uifaces_faces_twitter_scottkclark_128.jpg",
}
GROUP = {"type": "group", "messageId": "msg-group", "userId": "u", "groupId": "g", "timestamp": T}
ALIAS = {
    "type": "alias",
    "messageId": "msg-alias",
    "userId": "u",
    "previousId": "a",
    "timestamp": T,
}
MALFORMED = {"type": "track", "messageId": "msg-bad", "event": "ApiCalls", "timestamp": T}
