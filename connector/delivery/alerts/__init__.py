"""Alerts (issue #20): who hears of a call that needs a person, through which channel, and when.

- `settings`: what an admin sets (the thresholds, quiet hours, the hourly cap), in the runtime settings;
- `planning`: the alerts a call's scores call for, made exactly once in the transaction that applied them;
- `digests`: what quiet hours or the cap held, gathered into one message per person and channel when they end;
- `messages`: the words a person reads (an alert, a digest), plain text and HTML;
- `channels`: the outbox targets that send them (e-mail, Telegram);
- `telegram_link`: one-time codes that link a person's Telegram chat, read back from the bot's updates.
The rules themselves are pure functions in `connector.core.alerting`.
"""
