"""The admin's policy as pure functions: settings + score -> Decision.

Semantics (see docs/scores.md, "Scores and the threshold"):
- every valid score is recorded while the feature is on;
- a tag is added only for a score strictly below `max_threshold`;
- a score at or above it carries the policy's `high_scores` rule: each CRM target writes it (`record`),
  writes nothing about it (`ignore`), or follows its own default (`default`); see `writes_score`;
- the feature off stores the score and decides nothing;
- a score outside the scale, or later than the rating window, is refused with a reason;
- with `lock_score`, the first customer score stays in force and later different
  ones are kept in history only; without it the newest wins and the replaced
  score's tag becomes `tag_to_remove`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum



class ScoreStatus(StrEnum):
    """What became of one score (`scores.status`)."""

    ACCEPTED = "accepted"  # the score is now the call's score in force
    REFUSED = "refused"  # invalid: never used
    KEPT = "kept"  # valid, kept in history, but a locked earlier score stays in force
    DUPLICATE = "duplicate"  # same value as the score in force: nothing changes


# Short names for tests and web/; connector/ spells `ScoreStatus.ACCEPTED`, so a reader sees the type.
ACCEPTED, REFUSED, KEPT, DUPLICATE = ScoreStatus.ACCEPTED, ScoreStatus.REFUSED, ScoreStatus.KEPT, ScoreStatus.DUPLICATE


class ScoreReason(StrEnum):
    """Why a customer score did what it did, as a stable code: `Decision.reason` is an English sentence
    for the API and logs, and a console translates this instead of reading that sentence."""

    BELOW_THRESHOLD = "below_threshold"  # in force, recorded and tagged
    AT_OR_ABOVE_THRESHOLD = "at_or_above_threshold"  # in force, recorded by the high scores rule, no tag
    FEATURE_OFF = "feature_off"  # in force, stored only: nothing is sent
    ALREADY_IN_FORCE = "already_in_force"  # the same value as the score in force
    LOCKED = "locked"  # the first score stays in force (lock_score)
    NOT_A_SCORE = "not_a_score"  # not digits, or outside the scale
    TOO_LATE = "too_late"  # came after the rating window


def score_reason(status: str, value: int | None, record: bool, tag: str | None) -> ScoreReason:
    """The reason of a decision from what is stored with it (`scores` and `calls.decision_*` keep these
    fields), so rows decided before the code existed get one too."""
    if status == ScoreStatus.REFUSED:
        return ScoreReason.NOT_A_SCORE if value is None else ScoreReason.TOO_LATE
    if status == ScoreStatus.DUPLICATE:
        return ScoreReason.ALREADY_IN_FORCE
    if status == ScoreStatus.KEPT:
        return ScoreReason.LOCKED
    if not record:
        return ScoreReason.FEATURE_OFF
    return ScoreReason.BELOW_THRESHOLD if tag else ScoreReason.AT_OR_ABOVE_THRESHOLD

SCORE_LIMIT = 100  # a keypad survey collects at most two digits

# Policy field -> environment variable that seeds it.
ENV_NAMES = {
    "enabled": "QA_ENABLED",
    "scale_min": "QA_SCALE_MIN",
    "scale_max": "QA_SCALE_MAX",
    "max_threshold": "QA_MAX_THRESHOLD",
    "tag_template": "QA_TAG_TEMPLATE",
    "score_text_template": "QA_SCORE_TEXT_TEMPLATE",
    "rating_window_days": "QA_RATING_WINDOW_DAYS",
    "lock_score": "QA_LOCK_SCORE",
    "high_scores": "QA_HIGH_SCORES",
}


class HighScores(StrEnum):
    """What a CRM target writes for a score at or above the threshold. MANGO's own CRM setting ignores
    such a score as unreliable; a CRM with a native rating that expects every score may record it."""

    DEFAULT = "default"  # each target's own default (its planning's `high_scores`)
    IGNORE = "ignore"  # nothing about the score in the CRM: no score text, tag, field or follow-up
    RECORD = "record"  # the score text (and the CRM's rating or field), without a tag


class PolicyError(ValueError):
    """A policy value is invalid. `field` names the policy field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def env_name(self) -> str:
        return ENV_NAMES.get(self.field, self.field)


@dataclass(frozen=True)
class Policy:
    enabled: bool = True
    scale_min: int = 1
    scale_max: int = 10
    max_threshold: int = 9
    tag_template: str = "Оценка {score}"
    score_text_template: str = "Оценка качества: {score}"
    rating_window_days: int = 0
    lock_score: bool = True
    high_scores: str = HighScores.DEFAULT.value  # a HighScores value, kept a plain str for JSON

    def tag_for(self, score: int | None) -> str | None:
        if score is None or score >= self.max_threshold:
            return None
        return self.tag_template.format(score=score)

    def score_text(self, score: int) -> str:
        return self.score_text_template.format(score=score)

    def as_dict(self) -> dict:
        return asdict(self)


LINE_FIELDS = ("enabled", "max_threshold", "high_scores")  # what a PBX line may override


@dataclass(frozen=True)
class Policies:
    """The global policy and the lines' overrides: a call is decided by its line's policy."""

    base: Policy
    lines: dict = field(default_factory=dict)  # line number -> {"enabled": .., "max_threshold": .., ...}

    def for_line(self, line: str | None) -> Policy:
        override = self.lines.get(line or "")
        return replace(self.base, **override) if override else self.base


def line_policy(base: Policy, override: object) -> Policy:
    """Validate a line's override against the global policy (raises PolicyError naming the field)."""
    if not isinstance(override, dict) or not override:
        raise PolicyError("override", f"expected an object with {' and/or '.join(LINE_FIELDS)}")
    for name in override:
        if name not in LINE_FIELDS:
            raise PolicyError(name, f"a line may override only {', '.join(LINE_FIELDS)}")
    return validate_policy(replace(base, **override))


@dataclass(frozen=True)
class Decision:
    status: ScoreStatus
    value: int | None  # the parsed score, None when unreadable
    record: bool  # the feature is on: targets write the score (one at or above the threshold: see high_scores)
    tag: str | None  # tag to add
    tag_to_remove: str | None  # tag of the score this one replaces
    reason: str
    # For a recorded score at or above the threshold: the policy's HighScores rule when it was decided;
    # None for any other. Kept with the score, so a later change of the setting rewrites no history.
    high_scores: str | None = None

    @property
    def in_force(self) -> bool:
        return self.status == ScoreStatus.ACCEPTED

    @property
    def at_or_above_threshold(self) -> bool:
        return self.high_scores is not None

    @property
    def code(self) -> ScoreReason:
        return score_reason(self.status, self.value, self.record, self.tag)


def writes_score(high_scores: str | None, target_default: HighScores) -> bool:
    """Whether a CRM target writes a recorded score: always below the threshold (`high_scores` None); at or
    above it as the decision's rule says, `default` meaning the target's own."""
    if high_scores is None:
        return True
    rule = HighScores(high_scores)
    return (target_default if rule == HighScores.DEFAULT else rule) == HighScores.RECORD


def _high_scores_rule(policy: Policy, tag: str | None) -> str | None:
    """The decision's `high_scores`: the policy's rule for a recorded score that got no tag (at or above
    the threshold: `tag_for` tags exactly the scores below it)."""
    return None if tag else policy.high_scores


_HIGH_VERDICTS = {
    HighScores.RECORD: "record only",
    HighScores.IGNORE: "no tag, not written into the CRM",
    HighScores.DEFAULT: "no tag; each CRM writes it or not by its default",
}


def _verdict(policy: Policy, value: int, tag: str | None, threshold: str) -> str:
    if tag:
        return f"score {value} is below the threshold {threshold}: record and tag"
    return f"score {value} is at or above the threshold {threshold}: {_HIGH_VERDICTS[HighScores(policy.high_scores)]}"


_TYPES = {f.name: f.type for f in fields(Policy)}


class PolicyConflict(PolicyError):
    """Each value is valid on its own, but together with the settings in force (or the others sent with it)
    they make no policy: a scale whose minimum is not below its maximum, a threshold outside the scale, a
    template too long for the scale's longest score. The API answers 409: the same change may fit other
    settings."""


TEMPLATE_MAX = 255  # characters a tag or score text may have (as written, and as rendered)
RATING_WINDOW_MAX = 3650
# Each integer field's range on its own (the relations between them are checked after these).
RANGES = {"scale_min": (0, SCORE_LIMIT - 2), "scale_max": (1, SCORE_LIMIT - 1),
          "max_threshold": (0, SCORE_LIMIT), "rating_window_days": (0, RATING_WINDOW_MAX)}
# A template as the OpenAPI document states it: text without control characters where a brace is doubled
# or part of a plain `{score}` (`{score:}` is the same placeholder to str.format), with one placeholder at
# least. It admits exactly the templates `template_syntax_problem` admits.
_TEMPLATE_TEXT = r"(?:[^{}\x00-\x1f\x7f-\x9f]|\{\{|\}\}|\{score:?\})"
TEMPLATE_PATTERN = rf"^{_TEMPLATE_TEXT}*\{{score:?\}}{_TEMPLATE_TEXT}*$"


def _scale_message(policy: Policy) -> str:
    return (f"the scale must satisfy 0 <= scale_min < scale_max <= {SCORE_LIMIT - 1}"
            f" (got {policy.scale_min}..{policy.scale_max})")


def _threshold_message(policy: Policy) -> str:
    return f"must lie within [{policy.scale_min}, {policy.scale_max + 1}], got {policy.max_threshold}"


def validate_policy(policy: Policy) -> Policy:
    """Return the policy unchanged, or raise PolicyError naming the first bad field: first a value that is
    wrong on its own, then (PolicyConflict) values that do not fit together."""
    for name, kind in _TYPES.items():
        value = getattr(policy, name)
        expected = {"bool": bool, "int": int, "str": str}[str(kind)]
        # bool is an int subclass; keep them apart so `true` is never a threshold.
        if type(value) is not expected:
            raise PolicyError(name, f"expected {expected.__name__}, got {value!r}")
    for name, (low, high) in RANGES.items():
        if not low <= getattr(policy, name) <= high:
            message = {"scale_min": _scale_message, "scale_max": _scale_message,
                       "max_threshold": _threshold_message}.get(name)
            raise PolicyError(name, message(policy) if message else
                              f"must be 0 (no limit) to {high}, got {getattr(policy, name)}")
    if policy.high_scores not in tuple(HighScores):
        raise PolicyError("high_scores", f"must be one of {', '.join(HighScores)}, got {policy.high_scores!r}")
    for name in ("tag_template", "score_text_template"):
        problem = template_syntax_problem(getattr(policy, name))
        if problem:
            raise PolicyError(name, problem)
    if not policy.scale_min < policy.scale_max:
        raise PolicyConflict("scale_max", _scale_message(policy))
    if not policy.scale_min <= policy.max_threshold <= policy.scale_max + 1:
        raise PolicyConflict("max_threshold", _threshold_message(policy))
    for name in ("tag_template", "score_text_template"):
        problem = template_problem(getattr(policy, name), policy.scale_max)
        if problem:
            raise PolicyConflict(name, problem)
    return policy


def template_syntax_problem(template: str) -> str | None:
    """Why a tag or score-text template is unusable whatever the scale, or None. Only a plain `{score}` is
    allowed: `{score[0]}`, `{score.x}`, `{score!r}`, `{score:>300}` or `{{score}}` would fail, reach into
    objects, or never show the score."""
    from connector.core.validation import TemplateFault, template_fault, text_problem

    problem = text_problem(template)
    if problem:
        return problem
    return {TemplateFault.UNBALANCED: "may use only the {score} placeholder (unbalanced braces)",
            TemplateFault.NOT_PLAIN: "may use only the plain {score} placeholder",
            TemplateFault.MISSING: "must contain {score}"}.get(template_fault(template, ("score",), "score"))


def template_problem(template: str, longest_score: int) -> str | None:
    """`template_syntax_problem`, or why the template does not fit its column with the longest score of
    the scale (or is blank), or None."""
    problem = template_syntax_problem(template)
    if problem:
        return problem
    rendered = template.format(score=longest_score)
    if not rendered.strip() or len(rendered) > TEMPLATE_MAX:
        return f"must render to 1..{TEMPLATE_MAX} characters (with the score {longest_score})"
    return None


def policy_from_config(config) -> Policy:
    """The initial policy from the environment settings (config.QA_*)."""
    return validate_policy(Policy(**{name: getattr(config, env) for name, env in ENV_NAMES.items()}))


def policy_with_changes(policy: Policy, changes: dict) -> Policy:
    """Apply an admin's partial change; raise PolicyError for an unknown field or a bad value."""
    for name in changes:
        if name not in _TYPES:
            raise PolicyError(name, "unknown setting")
    for name in ("tag_template", "score_text_template"):
        # A new template fits as written (a placeholder renders shorter than `{score}`), whatever the scale.
        if isinstance(changes.get(name), str) and len(changes[name]) > TEMPLATE_MAX:
            raise PolicyError(name, f"at most {TEMPLATE_MAX} characters")
    return validate_policy(replace(policy, **changes))


def parse_score(raw: str | int, policy: Policy) -> int:
    """Read a score from keypad digits or a number; raise ValueError with the reason."""
    if isinstance(raw, bool):
        raise ValueError(f"score must be a whole number, got {raw!r}")
    if isinstance(raw, str):
        text = raw.strip()
        if not text.isascii() or not text.isdigit():
            raise ValueError(f"score must be digits, got {raw!r}")
        raw = int(text)
    if not isinstance(raw, int):
        raise ValueError(f"score must be a whole number, got {raw!r}")
    if not policy.scale_min <= raw <= policy.scale_max:
        raise ValueError(f"score {raw} is outside the scale {policy.scale_min}..{policy.scale_max}")
    return raw


def decide(
    policy: Policy,
    raw_score: str | int,
    *,
    previous: int | None = None,
    rated_at: datetime | None = None,
    call_ended_at: datetime | None = None,
) -> Decision:
    """Decide what a new customer score does, given the score currently in force (`previous`)."""
    try:
        value = parse_score(raw_score, policy)
    except ValueError as exc:
        return Decision(ScoreStatus.REFUSED, None, False, None, None, str(exc))

    if policy.rating_window_days and rated_at and call_ended_at:
        if rated_at - call_ended_at > timedelta(days=policy.rating_window_days):
            return Decision(ScoreStatus.REFUSED, value, False, None, None,
                            f"rated more than {policy.rating_window_days} days after the call ended")

    if previous is not None:
        if value == previous:
            return Decision(ScoreStatus.DUPLICATE, value, False, None, None, f"score {value} is already in force")
        if policy.lock_score:
            return Decision(ScoreStatus.KEPT, value, False, None, None,
                            f"score locked: the first score {previous} stays in force")

    if not policy.enabled:
        return Decision(ScoreStatus.ACCEPTED, value, False, None, None, "feature off: score stored, nothing sent")

    tag = policy.tag_for(value)
    old_tag = policy.tag_for(previous)
    tag_to_remove = old_tag if old_tag != tag else None
    reason = _verdict(policy, value, tag, str(policy.max_threshold))
    if previous is not None:
        reason += f" (replaces {previous})"
    return Decision(ScoreStatus.ACCEPTED, value, True, tag, tag_to_remove, reason, _high_scores_rule(policy, tag))


def decide_again(policy: Policy, value: int) -> Decision:
    """The score in force, decided by another policy: its call's line became known after it came."""
    if not policy.enabled:
        return Decision(ScoreStatus.ACCEPTED, value, False, None, None,
                        "feature off on this line: score stored, nothing sent")
    tag = policy.tag_for(value)
    reason = _verdict(policy, value, tag, f"{policy.max_threshold} of this line")
    return Decision(ScoreStatus.ACCEPTED, value, True, tag, None, reason, _high_scores_rule(policy, tag))
