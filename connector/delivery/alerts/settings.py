"""The alerts' settings: what an admin sets on the alerts page (or the settings API), kept in the runtime
settings' `alerts` scope, audited. Who receives what is the routes' business (`connector.core.alert_people`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from sqlalchemy.orm import Session

from connector.core.alerting import QuietHours, Thresholds
from connector.core.policy import PolicyError
from connector.core.runtime_settings import scope_values, update_scope

SCOPE = "alerts"


@dataclass(frozen=True)
class AlertSettings:
    supervisor_below: int = 0  # a supervisor score below this alerts; 0: never
    divergence: int = 0  # customer and supervisor scores at least this far apart alert; 0: never
    quiet_from_hour: int = 0  # local hours alerts wait through, [from, until); equal: none
    quiet_until_hour: int = 0
    cap_per_hour: int = 0  # alerts a person gets one by one in an hour; more join the digest; 0: no cap

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.supervisor_below or None, self.divergence or None)

    @property
    def quiet(self) -> QuietHours:
        return QuietHours(self.quiet_from_hour, self.quiet_until_hour)

    def as_dict(self) -> dict:
        return asdict(self)


RANGES = {"supervisor_below": (0, 100), "divergence": (0, 100), "quiet_from_hour": (0, 23),
          "quiet_until_hour": (0, 23), "cap_per_hour": (0, 100)}
_NAMES = tuple(f.name for f in fields(AlertSettings))


def validate(settings: AlertSettings) -> AlertSettings:
    """The settings unchanged, or PolicyError naming the first field that is wrong."""
    for name, (low, high) in RANGES.items():
        value = getattr(settings, name)
        if type(value) is not int:
            raise PolicyError(name, f"expected a whole number, got {value!r}"[:200])
        if not low <= value <= high:
            raise PolicyError(name, f"must be {low} to {high}, got {value}")
    return settings


def with_changes(settings: AlertSettings, changes: dict) -> AlertSettings:
    unknown = sorted(set(changes) - set(_NAMES))
    if unknown:
        raise PolicyError(unknown[0], "not a setting of the alerts")
    return replace(settings, **changes)


def read(session: Session) -> AlertSettings:
    values, _ = scope_values(session, SCOPE)
    return AlertSettings(**{k: v for k, v in values.items() if k in _NAMES})


def save(session: Session, changes: dict, actor: str) -> AlertSettings:
    """Validate the changes against the settings in force and store them, audited (PolicyError: nothing stored)."""
    settings = validate(with_changes(read(session), changes))
    update_scope(session, SCOPE, settings.as_dict(), actor)
    return settings
