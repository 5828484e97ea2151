"""Rating by link: after a call the IVR survey missed, a signed one-time link goes to the customer by SMS
through the PBX, and the answer on a public page becomes a score of origin `link`.

- `settings`: the admin's rules (on/off globally and per line, the delay, the sending hours, the template...),
  pure checks and their storage in the runtime settings;
- `rules`: pure functions: which calls qualify, when a request may go, the link's token, the page's scale;
- `planner`: makes the requests and hands the due ones to the outbox;
- `sms`: the outbox target that sends them through the PBX's SMS command, and the PBX's later answers;
- `answers`: the rating page's reads and writes (open, rate, do not contact me).
"""
