"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py 'app:create_app()'`.

gevent workers: every connection is a cheap greenlet, so connections that are open but idle
(keep-alive clients, a scanner, a slow proxy) hold no thread and never lock others out; 200 of them
do not stop /healthz. Sync and gthread workers give each new connection a thread until it sends
(gthread: up to 5 s each), so a few hundred idle ones queue every real request behind them.
Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""
import multiprocessing
import os
import shutil
import tempfile

from connector.core.logs import configure_logging

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
# One process per core: a gevent worker is never idle waiting on I/O, so more processes than cores only
# share the cores, and split the callbacks' group commits into smaller ones. On 2 cores, 2 workers took 700-807
# callbacks/s into PostgreSQL where 4 took 601-672, the bare endpoint's rate unchanged (bench/ingest.py
# --server gunicorn; docs/deployment.md).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gevent"
worker_connections = 1000  # open connections per worker, idle ones included
keepalive = 5  # seconds an idle keep-alive connection is kept
timeout = 30  # a request taking longer than this restarts its worker
graceful_timeout = 30
limit_request_line = 8190
limit_request_fields = 100
accesslog = None  # the reverse proxy logs requests; errors go to stderr
configure_logging()  # the connector's own lines, as under `connector serve`; workers inherit it

# Prometheus: every worker writes its counters to one directory, so a scrape of any worker sums them all.
# A standalone `connector worker` on this host joins in when it has the same PROMETHEUS_MULTIPROC_DIR.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "connector-metrics"))


def on_starting(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    from commands.cli import freeze_what_is_loaded

    freeze_what_is_loaded()  # the worker's app, loaded: out of the garbage collector's sight (commands.cli)
