"""The settings page (admin only): the policy, each line's override, the connections' state, dead deliveries
with a replay button; and the audit of changes. Its other sections (PBX, CRMs, operators, time zone) are their
own modules, which render the page through `settings_page` when they refuse a post."""
from __future__ import annotations

from dataclasses import replace

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from connector import registry
from connector.console import status
from connector.core.models import JobStatus, Role
from connector.core.policy import PolicyError
from connector.core.runtime_settings import (audit_trail, current_policies, current_policy, delete_line_override,
                                             update_line_override, update_policy)
from connector.delivery import outbox
from webui import labels
from webui.common import bp, login_required, services
from webui.forms import LineOverrideForm, ReplayForm, SettingsForm
from webui.problems import policy_problem


POLICY_FIELDS = ("enabled", "scale_min", "scale_max", "max_threshold", "tag_template", "score_text_template",
                 "rating_window_days", "lock_score", "high_scores")


HIGH_SCORES_LABELS = labels.high_scores_label.words


@bp.route("/settings", methods=["GET", "POST"])
@login_required(Role.ADMIN)
def settings():
    """The policy, each error beside its field and nothing half-saved; the connections' state; dead
    deliveries with a replay button."""
    initial = services().ingest.initial_policy
    form = SettingsForm()
    errors: dict[str, str] = {}
    saved = False
    if request.method == "POST":
        if not form.validate_on_submit():
            errors = {name: field.errors[0] for name, field in form._fields.items() if field.errors}
            if form.csrf_token.errors:
                errors["form"] = _("Форма устарела или подделана: откройте страницу заново")
        else:
            changes = {name: form[name].data for name in POLICY_FIELDS}
            errors = {name: _("обязательное поле") for name, value in changes.items() if value is None}
            if not errors:
                try:
                    with services().db.transaction() as s:  # a refused change rolls back whole
                        update_policy(s, initial, changes, actor=g.principal.username)
                    saved = True
                except PolicyError as exc:
                    errors[exc.field] = policy_problem(exc, _candidate_scale(initial, changes))
    editing = request.args.get("line") if request.method == "GET" else None
    return settings_page(form if request.method == "POST" and not saved else None, errors, saved,
                          editing=editing)


def _candidate_scale(initial, changes: dict):
    """The scale a refused change was checked with: a threshold's bounds are said on it."""
    with services().db.reading() as s:
        policy = current_policy(s, initial)
    scale = {k: changes[k] for k in ("scale_min", "scale_max") if isinstance(changes.get(k), int)}
    return replace(policy, **scale)


def settings_page(form: SettingsForm | None, errors: dict, saved: bool, *, line_form: LineOverrideForm | None = None,
                  line_problem: str | None = None, editing: str | None = None, code: int | None = None):
    """The settings page; `form` / `line_form` hold what was posted (None: the values stored). Each connection
    card reads its own data through a template global (`mango_section()`, `zone_section()`, `amocrm_section()`
    …), as posted when its own post was refused."""

    initial = services().ingest.initial_policy
    with services().db.reading() as s:
        policies = current_policies(s, initial)
        policy = policies.base
        state = {**status.details(s, services().config.targets, registry.PBX.guard_state,
                                  registry.channels_on(s, services().config)),
                 **status.last_activity(s)}
        dead = [{"id": j.id, "kind": j.kind, "crm": j.crm, "call_id": j.call.entry_id, "started_at": j.call.created_at,
                 "error": j.last_error, "at": j.updated_at.isoformat()}
                for j in outbox.list_jobs(s, JobStatus.DEAD, limit=50)]
    if form is None:
        form = SettingsForm(formdata=None, data=policy.as_dict())
    if line_form is None:
        line_form = LineOverrideForm(formdata=None)
        if editing in policies.lines:
            line_form.line_number.data = editing
            line_form.show(policies.lines[editing])
    line_form.inherit_from(policy, HIGH_SCORES_LABELS)
    lines = sorted(policies.lines.items())
    # Lines that stay on by their own setting while the feature is off: said, since the switch does not reach them.
    switched_on = [line for line, o in lines if o.get("enabled") is True] if not policy.enabled else []
    if request.method != "GET":  # a refused post: the page is the settings page
        g.page_url = url_for(".settings")
    return render_template("settings.html", form=form, errors=errors, saved=saved, state=state, dead=dead,
                           replay_form=ReplayForm(), fields=POLICY_FIELDS, lines=lines, policy=policy,
                           line_form=line_form, line_problem=line_problem,
                           line_saved=request.method == "GET" and request.args.get("line_saved") == "1",
                           switched_on=switched_on, high_scores_labels=HIGH_SCORES_LABELS), \
        code or (422 if errors else 200)


@bp.post("/settings/lines")
@login_required(Role.ADMIN)
def save_line():
    """Set a line's override: only what the admin chose ("as in the general settings" and an empty threshold
    store nothing, so the general settings, the switch included, keep covering those fields). Nothing chosen
    at all: the line follows the general settings again. A refusal is said on the line form."""
    form = LineOverrideForm()
    with services().db.reading() as s:
        policy = current_policy(s, services().ingest.initial_policy)
    form.inherit_from(policy, HIGH_SCORES_LABELS)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            problem = _("Форма устарела или подделана: откройте страницу заново")
        else:
            problem = next(str(f.errors[0]) for f in form if f.errors)
        return settings_page(None, {}, False, line_form=form, line_problem=problem, code=400)
    line = form.line_number.data.strip()
    override = form.override()
    try:
        with services().db.transaction() as s:
            if override:
                update_line_override(s, services().ingest.initial_policy, line, override,
                                     actor=g.principal.username)
            elif not delete_line_override(s, line, actor=g.principal.username):
                problem = _("Для линии ничего не выбрано: она и так следует общим настройкам. Выберите своё.")
                return settings_page(None, {}, False, line_form=form, code=422, line_problem=problem)
    except PolicyError as exc:
        return settings_page(None, {}, False, line_form=form, line_problem=policy_problem(exc, policy), code=422)
    return redirect(url_for(".settings", line_saved=1) + "#lines")


@bp.post("/settings/lines/<line_number>/delete")
@login_required(Role.ADMIN)
def delete_line(line_number: str):
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        abort(400)
    with services().db.transaction() as s:
        delete_line_override(s, line_number, actor=g.principal.username)
    return redirect(url_for(".settings"))


@bp.post("/settings/replay")
@login_required(Role.ADMIN)
def replay_dead():
    """Every dead delivery back in the queue with a fresh retry budget (`connector deliveries replay`)."""
    if not ReplayForm().validate_on_submit():
        abort(400)
    with services().db.transaction() as s:
        ids = outbox.jobs_to_replay(s, JobStatus.DEAD, None)
    plannings = {target.name: target for target in services().ingest.targets}
    for job_id in ids:
        with services().db.transaction() as s:
            outbox.replay(s, job_id, plannings)
    return redirect(url_for(".settings"))


@bp.get("/audit")
@login_required(Role.ADMIN)
def audit():
    with services().db.reading() as s:
        rows = [{"actor": r.actor, "at": r.changed_at.isoformat(), "scope": labels.audit_scope_label(r.scope),
                 "changes": [(labels.audit_field_label(r.scope, k), labels.audit_value(k, r.before.get(k)),
                              labels.audit_value(k, r.after.get(k)))
                             for k in {**r.before, **r.after} if r.before.get(k) != r.after.get(k)]}
                for r in audit_trail(s, limit=200)]
    return render_template("audit.html", rows=rows)
