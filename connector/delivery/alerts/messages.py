"""The words a person reads in an alert or a digest: plain text, an HTML body for e-mail (inline styles and a
table layout, as common mail clients read it), and Telegram's HTML subset (b, i, a, blockquote: no <br>, no
styles; https://core.telegram.org/bots/api#html-style).

What an alert says: the trigger in words, the score(s), the operator, the line, the call's local time, the
customer's number masked to its last four digits, the comment, and a link to the call page (the console asks
for a login). Never a recording link: a bearer link would let anyone who reads the message listen.
Everything that came from outside (a name, a comment) is escaped, and cut to a length a message can carry.
"""
from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import get_timezone_location

from connector.core.alerting import Trigger

COMMENT_SHOWN = 500
NAME_SHOWN = 80
DIGEST_SHOWN = 30  # calls a digest lists one by one; the rest are counted

HEADLINES = {
    Trigger.LOW_SCORE: "Низкая оценка клиента",
    Trigger.SUPERVISOR_LOW: "Низкая оценка супервизора",
    Trigger.DIVERGENCE: "Оценки клиента и супервизора расходятся",
}


@dataclass(frozen=True)
class AlertView:
    """One alert as a message shows it; times already in the account's zone."""

    trigger: Trigger
    call_url: str
    at: datetime | None
    operator: str | None
    line: str | None
    customer: str  # masked
    customer_score: int | None
    supervisor_score: int | None
    scale_max: int
    comment: str | None


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str  # an e-mail body
    telegram: str  # Telegram's HTML subset


def clean(text: str | None, limit: int) -> str:
    """Outside text made safe to show: no control or direction-override characters, one line, cut to `limit`."""
    kept = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text or ""
                   if unicodedata.category(ch) != "Cf" or ch in "\u200c\u200d")
    kept = " ".join(kept.split())
    return kept if len(kept) <= limit else kept[:limit - 1] + "…"


def _when(view: AlertView) -> str:
    return view.at.strftime("%d.%m.%Y %H:%M") if view.at else "время неизвестно"


def _when_in_zone(view: AlertView) -> str:
    """The call's time with the account's zone named, as a person far from it reads it: "… 11:54 (Москва)"."""
    if view.at is None or not isinstance(view.at.tzinfo, ZoneInfo):
        return _when(view)
    return f"{_when(view)} ({get_timezone_location(view.at.tzinfo, locale='ru', return_city=True)})"


def _scores(view: AlertView) -> str:
    parts = []
    if view.customer_score is not None:
        parts.append(f"клиент {view.customer_score} из {view.scale_max}")
    if view.supervisor_score is not None:
        parts.append(f"супервизор {view.supervisor_score} из {view.scale_max}")
    return ", ".join(parts) or "нет оценки"


def _facts(view: AlertView) -> list[tuple[str, str]]:
    facts = [("Оценка", _scores(view)), ("Оператор", clean(view.operator, NAME_SHOWN) or "не указан"),
             ("Линия", clean(view.line, NAME_SHOWN) or "не указана"), ("Звонок", _when_in_zone(view)),
             ("Клиент", view.customer or "номер неизвестен")]
    if view.comment:
        facts.append(("Комментарий", clean(view.comment, COMMENT_SHOWN)))
    return facts


def alert_message(views: list[AlertView]) -> Message:
    """One call's alert: the triggers one event brought (one or more), the call's facts once."""
    view = views[0]
    first, *more = dict.fromkeys(HEADLINES[v.trigger] for v in views)
    headline = first + "".join(f"; {part[:1].lower()}{part[1:]}" for part in more)
    if view.comment is None:
        view = next((v for v in views if v.comment), view)
    operator = clean(view.operator, NAME_SHOWN) or "оператор не указан"
    subject = f"{headline}: {_scores(view)} — {operator}, {_when(view)}"
    facts = _facts(view)
    text = "\n".join([headline, "", *(f"{k}: {v}" for k, v in facts), "", f"Открыть звонок: {view.call_url}"])
    e = html.escape
    telegram = "\n".join([f"<b>{e(headline)}</b>", *(f"{e(k)}: {e(v)}" for k, v in facts),
                          f'<a href="{e(view.call_url)}">Открыть звонок</a>'])
    rows = "".join(f'<tr><td style="padding:4px 12px 4px 0;color:#555;vertical-align:top">{e(k)}</td>'
                   f'<td style="padding:4px 0">{e(v)}</td></tr>' for k, v in facts)
    body = (f'<h1 style="font-size:18px;margin:0 0 12px">{e(headline)}</h1>'
            f'<table role="presentation" style="border-collapse:collapse;font-size:14px">{rows}</table>'
            f'<p style="margin:16px 0 0"><a href="{e(view.call_url)}" style="color:#0b57d0">Открыть звонок</a></p>')
    return Message(subject, text, _page(subject, body), telegram)


def digest_message(views: list[AlertView]) -> Message:
    """What quiet hours or the cap held, in one message, oldest first."""
    shown, rest = views[:DIGEST_SHOWN], len(views) - DIGEST_SHOWN
    subject = f"Сводка оповещений: {len(views)} {_calls_word(len(views))}"
    lines = [f"{_when(v)} · {HEADLINES[v.trigger]} · {_scores(v)} · {clean(v.operator, NAME_SHOWN) or 'оператор не указан'}"
             for v in shown]
    more = [f"…и ещё {rest}: в консоли, раздел «Звонки»."] if rest > 0 else []
    text = "\n".join([subject, "", *(f"{line}\n  {v.call_url}" for line, v in zip(lines, shown)), *more])
    e = html.escape
    telegram = "\n".join([f"<b>{e(subject)}</b>", *(f'• <a href="{e(v.call_url)}">{e(line)}</a>'
                                                     for line, v in zip(lines, shown)), *map(e, more)])
    items = "".join(f'<li style="margin:0 0 6px"><a href="{e(v.call_url)}" style="color:#0b57d0">{e(line)}</a></li>'
                    for line, v in zip(lines, shown))
    body = (f'<h1 style="font-size:18px;margin:0 0 12px">{e(subject)}</h1>'
            f'<ul style="padding-left:20px;font-size:14px">{items}</ul>'
            + "".join(f'<p style="font-size:14px">{e(m)}</p>' for m in more))
    return Message(subject, text, _page(subject, body), telegram)


def trial_message(channel_name: str) -> Message:
    text = f"Проверка: оповещения о низких оценках будут приходить сюда ({channel_name})."
    return Message("Проверка оповещений", text, _page("Проверка оповещений", f"<p>{html.escape(text)}</p>"),
                   html.escape(text))


def _calls_word(n: int) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return "звонок"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "звонка"
    return "звонков"


def _page(title: str, body: str) -> str:
    return ('<!doctype html><html lang="ru"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)}</title></head>'
            '<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#1f1f1f;'
            f'background:#ffffff">{body}</body></html>')
