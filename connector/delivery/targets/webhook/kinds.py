"""The outbound webhook's job kind."""
import enum


class JobKind(enum.StrEnum):
    SCORED = "scored"  # one message per score in force
