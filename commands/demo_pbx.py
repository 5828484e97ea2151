"""`connector demo-pbx`: a stand-in for the one MANGO command the console's player needs, so a call made by
`connector simulate` or `connector demo` plays without a PBX account. Point `MANGO_API_URL` at it; never use it
in production.

It answers the PBX's user list (`config/users/request`: the demo's operators, named), the SMS command of the
rating link (`commands/sms`: it prints the message, link included, instead of sending it, then reports it sent
and delivered to the connector as MANGO's `result/sms` and `events/sms` would), and
`POST /vpbx/queries/recording/post` as MANGO does (a signed form; a 302 to a temporary file
link, or result 3320 for a recording it does not have) for the recordings `simulate` and `demo` report
(`rec-sim-...`, `rec-demo-...`), and serves each as a few seconds of generated audio (WAV).
"""
from __future__ import annotations

import io
import json
import math
import secrets
import struct
import threading
import wave

from flask import Flask, Response, abort, jsonify, redirect, request

from connector.inbound.mango.callbacks import verify
from connector.inbound.pbx import CallbackRejected

SIMULATED_PREFIXES = ("rec-sim-", "rec-demo-")  # the recording ids `connector simulate` and `demo` send
NO_SUCH_FILE = 3320  # MANGO's result for a recording it cannot hand out
RATE = 8000  # Hz: telephone audio
DEMO_NAMES = {"101": "Анна Смирнова", "102": "Борис Кузнецов", "103": "Вера Попова", "104": "Глеб Соколов",
              "105": "Дарья Морозова", "106": "Егор Волков"}


def demo_recording(seconds: float = 4.0) -> bytes:
    """A recognisable, quiet sound: two-tone beeps, like a phone line, as 16-bit mono WAV."""
    frames = bytearray()
    for n in range(int(RATE * seconds)):
        t = n / RATE
        on = (t % 1.0) < 0.4
        sample = 0.25 * (math.sin(2 * math.pi * 425 * t) + math.sin(2 * math.pi * 600 * t)) / 2 if on else 0.0
        frames += struct.pack("<h", int(sample * 32767))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def _report(connector_url: str, api_key: str, salt: str, command_id: str) -> None:
    """What MANGO posts after an SMS: it was sent (`result/sms`), then delivered (`events/sms`)."""
    import requests

    from connector.inbound.mango.callbacks import signed_form

    for kind, body in (("result/sms", {"command_id": command_id, "result": 1000}),
                       ("events/sms", {"command_id": command_id, "reason": 1000})):
        try:
            requests.post(f"{connector_url.rstrip('/')}/mango/{kind}", data=signed_form(api_key, salt, body), timeout=5)
        except requests.RequestException:
            return  # the connector is not running: the request stays "accepted"


def create_demo_pbx(api_key: str, salt: str, *, connector_url: str | None = None, say=print) -> Flask:
    app = Flask("demo_pbx")
    audio = demo_recording()
    issued: dict[str, str] = {}  # single-use file token -> recording id, as MANGO's links are

    @app.post("/vpbx/queries/recording/post")
    def recording_post():
        try:
            body = json.loads(verify(request.form.to_dict(), api_key, salt))
        except (CallbackRejected, ValueError):
            return jsonify({"result": 3102})  # MANGO: bad sign (its HTTP status is not documented)
        recording_id = str(body.get("recording_id") or "")
        if not recording_id.startswith(SIMULATED_PREFIXES):
            return jsonify({"result": NO_SUCH_FILE})
        token = secrets.token_urlsafe(16)
        issued[token] = recording_id
        return redirect(f"{request.host_url}files/{token}.wav", code=302)

    @app.post("/vpbx/config/users/request")
    def users():
        """The PBX's user list, as MANGO answers it (`users`, no `result`): the demo's operators, named, so the
        console shows them by name."""
        try:
            verify(request.form.to_dict(), api_key, salt)
        except CallbackRejected:
            return jsonify({"result": 3102})
        from commands.demo import OPERATORS

        return jsonify({"users": [{"general": {"name": DEMO_NAMES.get(o.extension)},
                                   "telephony": {"extension": o.extension}} for o in OPERATORS]})

    @app.post("/vpbx/commands/sms")
    def sms():
        """MANGO's SMS command (accepted with result 1000); nothing is sent: the message is printed, with the
        number masked, so a person trying the rating link can open it."""
        try:
            body = json.loads(verify(request.form.to_dict(), api_key, salt))
        except (CallbackRejected, ValueError):
            return jsonify({"result": 3102})
        if not isinstance(body, dict) or not body.get("from_extension") or not body.get("text"):
            return jsonify({"result": 3100})  # MANGO VPBX API v1.9 §3.2.4: from_extension and text are required
        number = str(body.get("to_number") or "")
        say(f"SMS to {number[:4]}***{number[-2:]} from extension {body['from_extension']}: {body['text']}")
        if connector_url:
            threading.Timer(1.0, _report, (connector_url, api_key, salt, str(body.get("command_id")))).start()
        return jsonify({"result": 1000})

    @app.get("/files/<token>.wav")
    def recording_file(token: str):
        if issued.pop(token, None) is None:
            abort(404)
        return Response(audio, mimetype="audio/wav")

    return app
