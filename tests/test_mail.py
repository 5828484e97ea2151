"""E-mail through a real SMTP server started by the test (aiosmtpd): the message as sent (UTF-8 subject, a plain
and an HTML part, a stable Message-ID), the three kinds of security, and what each refusal becomes: a 4xx reply
or no answer is transient, a 5xx reply or a refused login is permanent, each with the server's words and never
the password."""
from __future__ import annotations

import pytest

from connector.delivery.contract import PermanentError, TransientError
from connector.delivery.mail import Mail, Mailer, MailSecurity, MailSettings
from tests.fakes.smtp import PASSWORD, certificate, smtp_server
from tests.ports import free_port


MAIL = Mail(to="sam@example.ru", subject="Низкая оценка: 3 — Анна Смирнова", text="Оценка 3.\nОткройте звонок.",
            html="<p>Оценка <b>3</b>.</p>", message_id="<alert-call-1-low_score-7@qa.example.ru>")


def test_a_message_goes_through_starttls_with_a_login_as_written(tmp_path):
    server_tls, client_tls = certificate(tmp_path)
    with smtp_server(tls_context=server_tls, require_starttls=True) as (inbox, port):
        settings = MailSettings("127.0.0.1", port, MailSecurity.STARTTLS, "alerts", PASSWORD, "qa@example.ru")
        Mailer(settings, tls=client_tls).send(MAIL)
    [got] = inbox.messages
    assert (got["From"], got["To"], got["Subject"]) == ("qa@example.ru", "sam@example.ru", MAIL.subject)
    assert got["Message-ID"] == MAIL.message_id and got["Date"]
    assert got.get_body("plain").get_content().replace("\r\n", "\n").strip() == MAIL.text  # SMTP sends CRLF
    assert got.get_body("html").get_content().strip() == MAIL.html


def test_implicit_tls_and_a_relay_without_security_work_too(tmp_path):
    server_tls, client_tls = certificate(tmp_path)
    with smtp_server(ssl_context=server_tls) as (inbox, port):
        Mailer(MailSettings("127.0.0.1", port, MailSecurity.TLS, sender="qa@example.ru"), tls=client_tls).send(MAIL)
    with smtp_server(auth_require_tls=False) as (relay, port):
        Mailer(MailSettings("127.0.0.1", port, MailSecurity.NONE, "alerts", PASSWORD, "qa@example.ru")).send(MAIL)
    assert len(inbox.messages) == len(relay.messages) == 1


def test_a_refused_login_is_permanent_and_names_the_user_never_the_password(caplog):
    with smtp_server(auth_require_tls=False) as (inbox, port):
        mailer = Mailer(MailSettings("127.0.0.1", port, MailSecurity.NONE, "alerts", "wrong-" + PASSWORD,
                                     "qa@example.ru"))
        with pytest.raises(PermanentError) as err:
            mailer.check()
    assert "refused the login for 'alerts'" in err.value.message and "535" in err.value.message
    assert PASSWORD not in err.value.message and PASSWORD not in caplog.text and inbox.messages == []


@pytest.mark.parametrize("to, kind, said", [("full@example.ru", TransientError, "452 4.2.2 Mailbox full"),
                                            ("nobody@example.ru", PermanentError, "550 5.1.1 No such user")])
def test_a_refused_address_is_transient_or_permanent_as_the_server_says(to, kind, said):
    with smtp_server(auth_require_tls=False) as (inbox, port):
        with pytest.raises(kind) as err:
            Mailer(MailSettings("127.0.0.1", port, MailSecurity.NONE, sender="qa@example.ru")).send(
                Mail(to=to, subject="s", text="t"))
    assert said in err.value.message and type(err.value) is kind and inbox.messages == []


def test_no_server_and_an_untrusted_certificate_say_so(tmp_path):
    with pytest.raises(TransientError) as err:
        Mailer(MailSettings("127.0.0.1", free_port(), MailSecurity.NONE, timeout=2)).check()
    assert "did not answer" in err.value.message
    server_tls, _client = certificate(tmp_path)
    with smtp_server(tls_context=server_tls) as (_inbox, port):
        with pytest.raises(PermanentError) as err:
            Mailer(MailSettings("127.0.0.1", port, MailSecurity.STARTTLS, timeout=5)).check()
    assert "certificate is not trusted" in err.value.message


def test_the_mail_test_command_sends_one_message_or_says_why_not(monkeypatch):
    from click.testing import CliRunner

    from commands.cli import cli

    def run(**env):
        for key in ("SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_FROM"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return CliRunner().invoke(cli, ["mail-test", "--to", "sam@example.ru"])

    with smtp_server(auth_require_tls=False) as (inbox, port):
        base = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none", "SMTP_FROM": "qa@example.ru",
                "SMTP_USERNAME": "alerts"}
        sent = run(**base, SMTP_PASSWORD=PASSWORD)
        refused = run(**base, SMTP_PASSWORD="wrong")
    assert sent.exit_code == 0 and f"sent to sam@example.ru through 127.0.0.1:{port} (none)" in sent.output
    [got] = inbox.messages
    assert got["Subject"] == "Проверка почты коннектора оценок" and got["To"] == "sam@example.ru"
    assert refused.exit_code == 1 and "not sent, fix the settings: the mail server refused the login" in refused.output
    assert PASSWORD not in sent.output + refused.output
    unset = run()
    assert unset.exit_code == 2 and "set SMTP_HOST and SMTP_FROM" in unset.output
