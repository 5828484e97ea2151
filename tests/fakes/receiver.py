"""A receiver of Standard Webhooks (https://www.standardwebhooks.com/), as a BI endpoint would be:
it verifies the signature with the official library, refuses stale or forged messages with 400, and
deduplicates by `webhook-id`, as the specification asks receivers to. Answers can be scripted."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class FakeReceiver:
    secret: str
    answers: list = field(default_factory=list)  # statuses to answer next (then 204), e.g. [500, 503]
    received: list = field(default_factory=list)  # (webhook-id, body) of every verified POST
    applied: dict = field(default_factory=dict)  # webhook-id -> body, once each
    after_effect: object = None  # callable(webhook-id), run after a message was applied, before answering

    def __post_init__(self):
        self.lock = threading.Lock()


def create_receiver(fake: FakeReceiver) -> Flask:
    app = Flask("fake_receiver")
    verifier = Webhook(fake.secret)

    @app.post("/hook")
    def hook():
        raw = request.get_data(as_text=True)
        try:
            verifier.verify(raw, dict(request.headers))
        except WebhookVerificationError as exc:
            return {"error": str(exc)}, 400
        message_id = request.headers["webhook-id"]
        with fake.lock:
            fake.received.append((message_id, json.loads(raw)))
            if fake.answers:
                status = fake.answers.pop(0)
                return {"error": "scripted"}, status
            fake.applied.setdefault(message_id, json.loads(raw))
        if fake.after_effect is not None:
            fake.after_effect(message_id)
        return "", 204

    return app
