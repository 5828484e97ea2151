"""amoCRM's job kinds: the effects a call may need there, one job each (`target.py` says what each carries)."""
import enum


class JobKind(enum.StrEnum):
    LOG_CALL = "log_call"  # the call in the CRM's call log, on the caller's contact
    CONTACT = "contact"  # a contact for a caller the CRM does not know (AMOCRM_CREATE_CONTACTS)
    NOTE = "note"  # the score text as a note
    TAGS = "tags"  # the score's tag, and the score field when set
    TASK = "task"  # a follow-up task for a tagged score (LOW_SCORE_TASK)
