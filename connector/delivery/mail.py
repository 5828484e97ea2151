"""E-mail through the account's SMTP server (issue #20: alerts, digests and scheduled reports go out by it).

One message per connection: alerts are few, and a connection kept open between them would meet the server's
idle timeout. The server's answer decides what becomes of a message, as a target's answer does for a job
(`connector.delivery.contract`): a 4xx reply, no answer or a dropped connection is `TransientError` (try again
later); a 5xx reply, a refused login or a refused address is `PermanentError`, with the server's own words, so
a person sees why (RFC 5321 §4.2.1: 4yz transient, 5yz permanent). Passwords are never logged.
"""
from __future__ import annotations

import enum
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from connector.delivery.contract import PermanentError, TransientError


class MailSecurity(enum.StrEnum):
    STARTTLS = "starttls"  # port 587: plain, then STARTTLS before anything else (RFC 3207)
    TLS = "tls"  # port 465: TLS from the first byte (RFC 8314)
    NONE = "none"  # a relay on the same host or network only


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int = 587
    security: MailSecurity = MailSecurity.STARTTLS
    username: str = ""
    password: str = ""
    sender: str = ""  # the From address
    timeout: float = 20.0


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str  # the plain-text part, always there
    html: str | None = None  # an HTML alternative
    message_id: str | None = None  # stable across tries of one message (a receiver may drop a repeat by it)


def message_of(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, mail.to, mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = mail.message_id or make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    return message


class Mailer:
    def __init__(self, settings: MailSettings, *, tls: ssl.SSLContext | None = None):
        self.settings = settings
        self.tls = tls or ssl.create_default_context()

    def send(self, mail: Mail) -> None:
        """Hand one message to the server; raises TransientError or PermanentError (see the module)."""
        message = message_of(mail, self.settings.sender)
        self._session(lambda smtp: smtp.send_message(message))

    def check(self) -> None:
        """Connect, secure and log in, then leave: the settings work (raises as `send` does)."""
        self._session(lambda smtp: smtp.noop())

    def _session(self, work) -> None:
        s = self.settings
        try:
            if s.security == MailSecurity.TLS:
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.tls)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.security == MailSecurity.STARTTLS:
                    smtp.starttls(context=self.tls)
                if s.username:
                    smtp.login(s.username, s.password)
                work(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"the mail server refused the login for {s.username!r}: {_said(exc)}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            refused = f"the mail server refused the address: {_reply(*next(iter(exc.recipients.values())))}"
            raise (TransientError(refused) if all(400 <= c < 500 for c in codes) else PermanentError(refused)) from None
        except smtplib.SMTPResponseException as exc:
            said = f"the mail server answered {_said(exc)}"
            raise (TransientError(said) if 400 <= exc.smtp_code < 500 else PermanentError(said)) from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentError("the mail server offers no STARTTLS: choose tls (port 465) or ask for it") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"the mail server's certificate is not trusted: {exc.verify_message}") from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, socket.timeout, OSError) as exc:
            raise TransientError(f"the mail server at {s.host}:{s.port} did not answer ({type(exc).__name__})") \
                from None


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {words}".strip()[:300]


def _said(exc: smtplib.SMTPResponseException) -> str:
    return _reply(exc.smtp_code, exc.smtp_error)


def mail_settings(config) -> MailSettings | None:
    """The SMTP server the settings name (SMTP_*), or None when none is set (no e-mail goes out)."""
    if not config.SMTP_HOST:
        return None
    return MailSettings(config.SMTP_HOST, config.SMTP_PORT, MailSecurity(config.SMTP_SECURITY), config.SMTP_USERNAME,
                        config.SMTP_PASSWORD, config.SMTP_FROM)
