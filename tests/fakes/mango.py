"""A fake MANGO OFFICE VPBX command endpoint: recording links.

`POST /vpbx/queries/recording/post` (signed form) answers 302 to a temporary,
single-use link, or HTTP 420 with {"code": NNNN} as the real PBX does.
"""
from __future__ import annotations

import hashlib
import json
import secrets

from flask import Flask, abort, jsonify, redirect, request


def create_fake_mango(api_key: str, salt: str, recordings: set[str]) -> Flask:
    app = Flask("fake_mango")
    issued: dict[str, str] = {}

    def fail(code: int):
        response = jsonify({"code": code})
        response.status_code = 420
        return response

    @app.post("/vpbx/queries/recording/post")
    def recording_post():
        form = request.form
        if form.get("vpbx_api_key") != api_key:
            return fail(3105)
        expected = hashlib.sha256((api_key + form.get("json", "") + salt).encode()).hexdigest()
        if form.get("sign") != expected:
            return fail(3102)
        body = json.loads(form["json"])
        if body.get("recording_id") not in recordings:
            return fail(3300)
        token = secrets.token_hex(8)
        issued[token] = body["recording_id"]
        return redirect(f"{request.host_url}files/{token}.mp3", code=302)

    @app.get("/files/<token>.mp3")
    def file(token):
        if token not in issued:
            abort(404)
        issued.pop(token)  # single use
        return b"ID3fake-mp3", 200, {"Content-Type": "audio/mpeg"}

    return app
