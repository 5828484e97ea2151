"""The QA console: login, calls with the player and reviews, exports. Pages for people, beside the JSON API
for machines; both read through `connector` and follow the same role rules.

One blueprint (`console`, in `webui.common` with what every page shares), its pages in modules by area:
`auth` (login, logout), `calls` (the list, a call's page, reviews, exports), `notifications`, `reports`,
`alerts` (a person's alert channels; the alerts' rules for admins), `settings` (the policy, lines, dead deliveries, the audit) with its sections (`pbx_connection`, `crm_connection`,
`target_connections`, `operator_map`, `time_zone`, `rating_link`: the rating link's card and the do-not-contact list), `users` (people, tokens, the login throttle). `filters`
reads the list's and the reports' filters; `operator_names` is the template filter naming operators."""
from __future__ import annotations

from datetime import timedelta

from flask_babel import Babel

from webui.common import LANGUAGES, TRANSLATIONS, bp, error_page, select_locale

# Each module registers its pages (or filters) on `bp` as it is imported.
from webui import (auth, calls, notifications, reports, settings, users, alerts,
                   crm_connection, operator_map, operator_names, pbx_connection, rating_link, target_connections,
                   time_zone)

__all__ = ["bp", "configure", "error_page",
           "auth", "calls", "notifications", "reports", "settings", "users", "alerts",
           "crm_connection", "operator_map", "operator_names", "pbx_connection", "rating_link", "target_connections",
           "time_zone"]


def configure(app) -> None:
    """Session cookies: HttpOnly, SameSite=Lax, Secure behind HTTPS. The cookie only names a server-side
    session (`console_sessions`), which ends at logout, after SESSION_IDLE_HOURS without a request, and
    SESSION_MAX_HOURS after the login. The UI speaks Russian, and English on request (Flask-Babel,
    catalogues in webui/translations)."""
    config = services_config(app)
    Babel(app, locale_selector=select_locale, default_locale=LANGUAGES[0], default_timezone=config.CONSOLE_TIMEZONE,
          timezone_selector=lambda: time_zone.selected_zone(),  # the account's zone (webui.time_zone)
          default_translation_directories=str(TRANSLATIONS))
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.PUBLIC_BASE_URL.startswith("https://"),
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=config.SESSION_MAX_HOURS), WTF_CSRF_TIME_LIMIT=None)
    app.wsgi_app = auth.refuse_logins_early(app.wsgi_app, app.extensions["connector"].db)


def services_config(app):
    return app.extensions["connector"].config
