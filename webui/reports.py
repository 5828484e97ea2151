"""The reports: figures per operator and per line, the score distribution and the daily trend as charts, the
response rate per channel and the rating requests' funnel, and their XLSX export."""
from __future__ import annotations

from datetime import date

from flask import Response, render_template
from flask_babel import gettext as _

from connector.console import xlsx
from webui import charts, labels
from webui.common import bp, login_required, services
from webui.filters import FilterRefused, report_filter


@bp.get("/reports")
@login_required()
def reports():
    try:
        flt, raw = report_filter()
    except FilterRefused as refused:  # said on the filter form, which keeps what was typed
        return render_template("reports.html", query=refused.query, problem=refused.message,
                               bad_field=refused.field, operators=None), 400
    # Counted in a child process (connector.console.offload), in one snapshot: the tables and charts agree.
    counted = services().figures(flt, services().ingest.initial_policy)
    policies, operators, lines = counted["policy"], counted["operators"], counted["lines"]
    scores, days = counted["distribution"], counted["daily"]
    policy = policies.for_line(flt.line)  # the chart's colours: the threshold of the line shown, or the global one
    return render_template("reports.html", query=raw, operators=operators, lines=lines, policy=policy,
                           own_thresholds=sorted(line for line, o in policies.lines.items() if "max_threshold" in o),
                           distribution=charts.bar_chart(scores, (policy.scale_min, policy.scale_max)),
                           days=days, chart=charts, trend=_trend(days, policy), counted_at=counted["counted_at"],
                           channels=counted["channels"], funnel=counted["funnel"], follow_ups=counted["follow_ups"],
                           problem=None, bad_field=None)


def _trend(days: list[dict], policy) -> charts.LineChart:
    """The daily averages on the scale in force, the days named as the page writes them."""
    return charts.line_chart([date.fromisoformat(d["day"]) for d in days], [d["average"] for d in days],
                             policy.scale_min, policy.scale_max, short=[labels.short_day_label(d["day"]) for d in days],
                             full=[labels.day_label(d["day"]) for d in days])


@bp.get("/reports/export.xlsx")
@login_required()
def export_report_xlsx():
    flt, _raw = report_filter()
    counted = services().figures(flt, services().ingest.initial_policy,
                                 ("operators", "lines", "channels", "funnel", "follow_ups"))
    tables = [(_("Операторы"), _report_rows(counted["operators"])), (_("Линии"), _report_rows(counted["lines"])),
              (_("Отклик по каналам"), _channel_rows(counted["channels"])),
              (_("Запросы по ссылке"), _funnel_rows(counted["funnel"])),
              (_("Пропуски и сбои"), _reason_rows(counted["funnel"])),
              (_("Обратная связь, операторы"), _follow_up_rows(counted["follow_ups"]["operators"])),
              (_("Обратная связь, линии"), _follow_up_rows(counted["follow_ups"]["lines"]))]
    sheets = [xlsx.Sheet(title, rows, xlsx.fit_widths(rows), header=True) for title, rows in tables]
    return Response(b"".join(xlsx.stream(sheets)), mimetype=xlsx.MIME,  # a few rows: no need to stream
                    headers={"Content-Disposition": "attachment; filename=report.xlsx"})


def _report_rows(body: dict) -> list[list]:
    """A report as a sheet: its columns named as the reports page names them, a row per item, then the totals
    (cells: connector.console.xlsx)."""
    names = {"operator": _("Оператор"), "line": _("Линия"), "calls": _("Звонков"), "answered": _("Отвечено"),
             "offered": _("Опрос предложен"), "no_answer": _("Без ответа"), "rated": _("Оценено"),
             "response_rate": _("Отклик") + ", %", "average": _("Средняя"), "positive": _("Довольны"),
             "negative": _("Недовольны"), "csat": "CSAT, %", "nps": "NPS",
             "supervisor_rated": _("Оценок супервизора"), "supervisor_average": _("Средняя супервизора")}
    columns = list(body["totals"])
    totals = [_("Итого")] + [body["totals"][c] for c in columns[1:]]  # its key is empty: the page's word for it
    return [[names[c] for c in columns]] + [[row[c] for c in columns] for row in body["items"]] + [totals]


def _follow_up_rows(body: dict) -> list[list]:
    """The follow-ups' figures as the page names them, a row per operator or line, then the totals."""
    names = {"operator": _("Оператор"), "line": _("Линия"), "follow_ups": _("Низких оценок"),
             "closed": _("Выполнено"), "follow_up_rate": _("Выполнено") + ", %", "median_hours": _("Медиана, ч"),
             "overdue": _("Просрочено"), "with_outcome": _("Закрыто с итогом"), "recovered": _("Вернули клиента"),
             "recovery_rate": _("Вернули клиента") + ", %"}
    columns = list(body["totals"])
    totals = [_("Итого")] + [body["totals"][c] for c in columns[1:]]
    return [[names[c] for c in columns]] + [[row[c] for c in columns] for row in body["items"]] + [totals]


def _channel_rows(body: dict) -> list[list]:
    """The response rate per channel as the page shows it, "any channel" last."""
    header = [_("Канал"), _("Оценено"), _("Можно было оценить"), _("Отклик") + ", %"]
    return [header] + [[labels.score_origin_label(row["channel"]), row["rated"], body["rateable"], row["response_rate"]]
                       for row in body["items"]] + \
        [[_("Любой канал"), body["any_channel"]["rated"], body["rateable"], body["any_channel"]["response_rate"]]]


def _funnel_rows(body: dict) -> list[list]:
    header = [_("Шаг"), _("Запросов"), _("От предыдущего шага") + ", %", _("От «К отправке»") + ", %"]
    return [header] + [[labels.funnel_step_label(row["step"]), row["requests"], row["of_previous"], row["of_due"]]
                       for row in body["steps"]]


def _reason_rows(body: dict) -> list[list]:
    """The skipped and the failed requests, by reason in words."""
    return [[_("Запросы"), _("Причина"), _("Запросов")]] + [
        [what, labels.request_reason_label(row["reason"]), row["requests"]]
        for what, counted in ((_("Пропущены"), body["skipped"]), (_("Не удались"), body["failed"]))
        for row in counted["by_reason"]]
