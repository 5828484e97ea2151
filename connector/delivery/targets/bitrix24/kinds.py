"""Bitrix24's job kinds: the effects a call may need there, one job each (`target.py` says what each carries)."""
import enum


class JobKind(enum.StrEnum):
    B24_CALL = "b24_call"  # register, finish (with the vote) and attach the recording
    B24_RECORD = "b24_record"  # attach a recording the call went without (failed, held or late)
    B24_MARK = "b24_mark"  # the score text as a timeline comment, and the user fields
    B24_TODO = "b24_todo"  # a follow-up to-do for a tagged score (LOW_SCORE_TASK)
