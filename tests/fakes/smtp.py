"""A real SMTP server for the tests (aiosmtpd, on a free loopback port), with an inbox that keeps what it
accepts and refuses the addresses the tests name, as a real server does at RCPT (RFC 5321 §4.2.1: a 4yz reply
is transient, a 5yz reply permanent), and a login it checks (a failed one answered 535 by aiosmtpd itself)."""
from __future__ import annotations

import datetime
import email
import email.policy
import ssl
from contextlib import contextmanager

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.ports import free_port

PASSWORD = "s3cret-mail-password"


class Inbox:
    """Keeps what it accepts; refuses the addresses its tests name, as a real server does at RCPT."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("full@"):
            return "452 4.2.2 Mailbox full, try later"  # RFC 5321 §4.2.1: 4yz, transient
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"  # 5yz: permanent
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts",
                                                                                            PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 535 itself on a failure


def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1, and a client context that trusts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


@contextmanager
def smtp_server(**options):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticate, **options)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()




def smtp_settings(port: int) -> dict:
    """The connector's settings for the test server on `port` (no TLS, no login)."""
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "SMTP_SECURITY": "none", "SMTP_FROM": "qa@example.ru"}
