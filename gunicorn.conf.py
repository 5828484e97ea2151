"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py 'app:create_app()'`.

Threads (gthread) rather than sync workers: an idle keep-alive connection then waits in the
worker's poller instead of holding a worker, so 200 idle connections do not stop /healthz.
Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "gthread"
threads = 8
worker_connections = 1000  # open connections per worker, idle ones included
keepalive = 5  # seconds an idle keep-alive connection is kept
timeout = 30  # a request taking longer than this restarts its worker
graceful_timeout = 30
limit_request_line = 8190
limit_request_fields = 100
accesslog = None  # the reverse proxy logs requests; errors go to stderr
