"""Builds the domain's services from the settings. No Flask here: the web app (`app.py`) and the
command line both start from these, and the command line never imports the web app."""
from __future__ import annotations

from typing import Callable

from connector import registry
from connector.core.config import Config
from connector.core.db import Database
from connector.core.policy import policy_from_config
from connector.inbound.ingest import IngestContext
from connector.inbound.mango.credentials import CredentialStore
from connector.inbound.mango.settings import settings_of as pbx_settings
from connector.inbound.pbx import PbxCommands


def load_settings(environ=None, *, dotenv: bool = True) -> Config:
    """The settings from the environment (and `.env`), with each listed target's own rules checked: an invalid
    value stops start-up with one line naming the setting."""
    config = Config.from_env(environ, dotenv=dotenv, sections=registry.sections())
    registry.check(config)
    return config


def ingest_context(config: Config) -> IngestContext:
    pbx = pbx_settings(config)
    from connector.delivery.alerts.channel_setup import environment_channels
    from connector.delivery.alerts.planning import AlertContext

    return IngestContext(initial_policy=policy_from_config(config), targets=registry.plannings(config),
                         survey_location=pbx.survey_location, poll_quality=pbx.quality_api,
                         alerts=AlertContext(environment_channels(config), config.CONSOLE_TIMEZONE),
                         follow_up_hours=config.LOW_SCORE_TASK_HOURS)


def build_pbx_credentials(config: Config, db: Database) -> CredentialStore:
    """The PBX's key and salt in force: the console's once an admin saved them, else the environment's."""
    return registry.PBX.build_credentials(config, db)


def build_pbx_api(config: Config, db: Database, *, session=None,
                  credentials: CredentialStore | None = None) -> PbxCommands:
    """The PBX's command API, shared by the recording player and the quality poller."""
    return registry.PBX.build_commands(config, db, session=session, credentials=credentials)


def build_directory(config: Config, db: Database, *, session=None):
    """Reads the PBX's user list (operators' names) every 6 hours, once the PBX's key and salt are set."""
    from connector.inbound.directory import DirectoryRefresher

    pbx = build_pbx_api(config, db, session=session)
    return DirectoryRefresher(db, pbx.users, ready=lambda: pbx.configured,
                              poll_seconds=max(config.WORKER_POLL_SECONDS, 5.0))


def build_workers(config: Config, db: Database, **adapter_options) -> list:
    """One delivery worker per configured target (none when CRM=none): each with its own queue, pause
    and rate limit, so one target's outage never holds up another."""
    from connector.delivery.worker import DeliveryLoop, WorkerOptions

    from connector.core.runtime_settings import user_map_scope

    def options(name: str) -> WorkerOptions:
        return WorkerOptions(initial_policy=policy_from_config(config), initial_user_map=config.user_map(name),
                             user_map_scope=user_map_scope(name), lease_seconds=config.WORKER_LEASE_SECONDS,
                             poll_seconds=config.WORKER_POLL_SECONDS)

    return [DeliveryLoop(db, registry.build_target(name, config, db, **adapter_options), options(name))
            for name in config.targets]


def build_worker(config: Config, db: Database, **adapter_options):
    """The first target's delivery worker, or None when CRM=none (tests and benchmarks of one target)."""
    workers = build_workers(config, db, **adapter_options)
    return workers[0] if workers else None


def build_poller(config: Config, db: Database, *, session=None):
    """The PBX's per-call quality poller, or None when MANGO_QUALITY_API is off or only the statistics
    are read. It runs whatever CRM is."""
    pbx = pbx_settings(config)
    if not pbx.quality_api or pbx.quality_source == "stats":
        return None
    from connector.inbound.poller import QualityPoller

    return QualityPoller(db, build_pbx_api(config, db, session=session), ingest_context(config),
                         survey_wait_seconds=config.SURVEY_WAIT_SECONDS, poll_seconds=config.WORKER_POLL_SECONDS,
                         probe_unknown=pbx.quality_source == "cc")


def build_scanner(config: Config, db: Database, *, session=None):
    """The bulk quality scan of the PBX's call statistics, or None when MANGO_QUALITY_API is off or
    MANGO_QUALITY_SOURCE=cc."""
    pbx = pbx_settings(config)
    if not pbx.quality_api or pbx.quality_source == "cc":
        return None
    from datetime import timedelta

    from connector.inbound.mango.scanner import QualityScanner

    return QualityScanner(db, build_pbx_api(config, db, session=session), ingest_context(config),
                          survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                          utc_offset=timedelta(hours=pbx.stats_utc_offset), per_call=pbx.quality_source == "both",
                          poll_seconds=config.WORKER_POLL_SECONDS)


def build_inbox(config: Config, db: Database, *, wake=None):
    """Applies the PBX events the webhook stored; `wake` lets a web thread of this process start it at once."""
    from connector.inbound.inbox import InboxApplier
    return InboxApplier(db, ingest_context(config), {registry.PBX.name: registry.PBX.parse}, wake=wake,
                        idle_seconds=config.INBOX_POLL_SECONDS)


def build_recording_copier(config: Config, db: Database, workers: list, *, session=None):
    """Copies recordings ahead of the targets that download them, or None when no target does or
    RECORDING_COPIES_MB is 0. It copies nothing while the PBX's key and salt are not set (console or environment)."""
    kinds = [kind for worker in workers for kind in worker.target.recording_kinds]
    if not kinds or not config.RECORDING_COPIES_MB:
        return None
    from connector.inbound.recordings import RecordingCopier

    pbx = build_pbx_api(config, db, session=session)
    return RecordingCopier(db, pbx.recording_file, kinds, max_bytes=config.RECORDING_COPIES_MB * 1024 * 1024,
                           poll_seconds=config.WORKER_POLL_SECONDS, ready=lambda: pbx.configured)


def build_rating_planner(config: Config, db: Database):
    """Makes the rating requests by link and queues the due ones (idle while the channel is off)."""
    from connector.inbound.link.planner import RatingPlanner

    return RatingPlanner(db, secret_key=config.SECRET_KEY, initial_policy=policy_from_config(config),
                         default_zone=config.CONSOLE_TIMEZONE, poll_seconds=max(config.WORKER_POLL_SECONDS, 5.0))


def build_sms_worker(config: Config, db: Database, *, session=None):
    """The outbox worker of the rating requests' SMS, sent through the PBX's command API."""
    from connector.core.runtime_settings import user_map_scope
    from connector.delivery.worker import DeliveryLoop, WorkerOptions
    from connector.inbound.link.sms import CHANNEL, SmsTarget

    pbx = build_pbx_api(config, db, session=session)
    target = SmsTarget(pbx.send_sms, secret_key=config.SECRET_KEY, public_base_url=config.PUBLIC_BASE_URL,
                       default_zone=config.CONSOLE_TIMEZONE)
    return DeliveryLoop(db, target, WorkerOptions(
        initial_policy=policy_from_config(config), initial_user_map={}, user_map_scope=user_map_scope(CHANNEL),
        lease_seconds=config.WORKER_LEASE_SECONDS, poll_seconds=config.WORKER_POLL_SECONDS))


def channel_setup(config: Config, db: Database):
    """The alert channels' set-up in force (the console's SMTP server and bot token, else the environment's),
    read by every sender at most a few seconds old."""
    from connector.delivery.alerts.channel_setup import ChannelSetupStore

    return ChannelSetupStore(db, config)


def bot_in_force(config: Config, setup) -> "Callable":
    """`() -> Bot | None`: the Telegram bot of the token in force (one client per token)."""
    from connector.delivery.telegram import Bot

    bots: dict[str, Bot] = {}

    def bot():
        token = setup.current().bot_token
        if not token:
            return None
        if token not in bots:
            bots.clear()
            bots[token] = Bot(token, base_url=config.TELEGRAM_API_URL)
        return bots[token]
    return bot


def alert_sender(config: Config, channel, setup):
    """What sends a message on one alert channel, `(address, message, message_id) -> None`, with the set-up in
    force when it sends; it raises the outbox's TransientError or PermanentError (AddressRefused: the address
    refuses messages; a channel not set up: PermanentError). The workers send through it, and so does the
    console's "send a test message"."""
    from connector.core.alerting import Channel
    from connector.delivery.alerts.channels import email_sender, telegram_sender

    if channel == Channel.EMAIL:
        return email_sender(lambda: setup.current().mail)
    return telegram_sender(bot_in_force(config, setup))


def build_alert_workers(config: Config, db: Database) -> list:
    """One outbox worker per alert channel; a channel nobody set up has no jobs, and its worker idles."""
    from connector.core.alerting import Channel
    from connector.core.runtime_settings import user_map_scope
    from connector.delivery.alerts.channels import AlertTarget
    from connector.delivery.worker import DeliveryLoop, WorkerOptions

    setup = channel_setup(config, db)
    return [DeliveryLoop(db, AlertTarget(channel, alert_sender(config, channel, setup),
                                         public_base_url=config.PUBLIC_BASE_URL, default_zone=config.CONSOLE_TIMEZONE),
                         WorkerOptions(initial_policy=policy_from_config(config), initial_user_map={},
                                       user_map_scope=user_map_scope(channel.value),
                                       lease_seconds=config.WORKER_LEASE_SECONDS,
                                       poll_seconds=config.WORKER_POLL_SECONDS))
            for channel in Channel]


def build_alert_worker(config: Config, db: Database, channel):
    """The outbox worker of one alert channel (tests and benchmarks of one channel)."""
    return next(w for w in build_alert_workers(config, db) if w.target.name == channel)


def build_digest_planner(config: Config, db: Database):
    """Gathers what quiet hours or the cap held into digests."""
    from connector.delivery.alerts.digests import DigestPlanner

    return DigestPlanner(db, poll_seconds=max(config.WORKER_POLL_SECONDS, 5.0))


def build_telegram_linker(config: Config, db: Database):
    """Links people's Telegram chats from the bot's updates (idle while no bot token is set)."""
    from connector.delivery.alerts.telegram_link import TelegramLinker

    return TelegramLinker(db, bot_in_force(config, channel_setup(config, db)),
                          poll_seconds=max(config.WORKER_POLL_SECONDS, 2.0))


def build_report_mailer(config: Config, db: Database):
    """Sends the scheduled report e-mails through the SMTP server in force (none planned while there is none)."""
    from connector.console.report_mail import ReportMailer
    from connector.delivery.mail import Mailer

    setup = channel_setup(config, db)

    def send(mail) -> None:
        Mailer(setup.current().mail).send(mail)
    return ReportMailer(db, send, ready=lambda: setup.current().mail is not None,
                        initial_policy=policy_from_config(config),
                        default_zone=config.CONSOLE_TIMEZONE, public_base_url=config.PUBLIC_BASE_URL,
                        poll_seconds=max(config.WORKER_POLL_SECONDS, 5.0), lease_seconds=config.WORKER_LEASE_SECONDS)


def build_follow_up_reader(config: Config, db: Database, *, session=None):
    """Reads the open follow-ups' CRM tasks back every FOLLOW_UP_POLL_MINUTES, or None when no configured target
    makes tasks."""
    from datetime import timedelta

    from connector.delivery.follow_ups import FollowUpReader

    readers = {name: reader for name in config.targets
               if (reader := registry.build_task_reader(name, config, db, session=session)) is not None}
    if not readers:
        return None
    return FollowUpReader(db, readers, every=timedelta(minutes=config.FOLLOW_UP_POLL_MINUTES))


def build_loops(config: Config, db: Database, *, wake=None) -> list:
    """Every background loop this configuration needs: the inbox, delivery, recording copies, PBX polling
    and scanning, the operator directory, the rating requests by link (planned, then sent), the alerts'
    channels and digests, the Telegram links, the report e-mails, and the follow-ups' read-back."""
    workers = build_workers(config, db)
    loops = (build_inbox(config, db, wake=wake), *workers, build_recording_copier(config, db, workers),
             build_poller(config, db), build_scanner(config, db), build_directory(config, db),
             build_rating_planner(config, db), build_sms_worker(config, db), *build_alert_workers(config, db),
             build_digest_planner(config, db), build_telegram_linker(config, db), build_report_mailer(config, db),
             build_follow_up_reader(config, db))
    return [loop for loop in loops if loop is not None]
