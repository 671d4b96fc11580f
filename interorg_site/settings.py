"""Settings for InterOrg Sync, read from the environment (see README.md, "Configuration")."""

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import ParseException, crontab
from django.core.exceptions import ImproperlyConfigured

from interorg_site import hardening
from interorg_site.env import envbool, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("INTERORG_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", False)
# Production (the image sets it; not with DEBUG): every secret must be given, and strong, and
# the console is served over HTTPS only. The embedded default (`make run`, the tests) needs none.
INTERORG_PRODUCTION = not DEBUG and envbool(
    "INTERORG_PRODUCTION", envbool("INTERORG_REQUIRE_SECRET_KEY", False)
)
hardening.refuse_placeholders(os.environ)
SECRET_KEY = envstr("SECRET_KEY", "")
if SECRET_KEY and INTERORG_PRODUCTION:
    hardening.require_strong_key(SECRET_KEY)
if not SECRET_KEY:
    if INTERORG_PRODUCTION:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set; generate one and export it ({hardening.MAKE_SECRET})."
        )
    # A per-checkout key, made once and kept under var/, so sessions survive restarts.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
# Secrets at rest (interorg_site/encryption.py): the first key encrypts, every key decrypts.
# Without any, a key made once under var/ (never in production: it would die with the container).
INTERORG_SECRETS_KEYS = hardening.parse_secrets_keys(envlist("INTERORG_SECRETS_KEYS", []))
INTERORG_SECRETS_KEY_FILE = VAR_DIR / "secrets_key"
if INTERORG_PRODUCTION and not INTERORG_SECRETS_KEYS:
    raise ImproperlyConfigured(
        "INTERORG_SECRETS_KEYS is not set: it encrypts the signing keys and LDAP passwords in "
        f"the database; keep it outside the database and its backups ({hardening.MAKE_FERNET_KEY})."
    )

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "directory",
    "transport",
    "master",
    "requestor",
    "demo",
    "bench",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "console",
    "axes",
]
# LDAP directories (the `ldap` extra): the entries' models, and a router that sends each
# organization's to its own server.
if importlib.util.find_spec("ldapdb") is not None:
    INSTALLED_APPS.append("directory.ldap")
    DATABASE_ROUTERS = ["directory.ldap.router.LdapRouter"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A NUL character anywhere in a request: 400 before any session, view or query sees it.
    "interorg_site.hostile_input.HostileInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Times in the user's zone (saved on the Time zone page, else the browser's).
    "console.timezones.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused for a lockout into the "too many failed logins" page (429).
    "axes.middleware.AxesMiddleware",
    # A stored secret the keys cannot open: 503 saying what to do, not a server error.
    "console.views.errors.UndecryptableSecretMiddleware",
]

ROOT_URLCONF = "interorg_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "interorg_site.wsgi.application"

DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'interorg.sqlite3'}")
try:
    # A persistent connection is checked before each request first uses it: after a database
    # restart or a killed connection the next request reconnects instead of answering 500.
    # (Celery's workers open a new connection for each task anyway.)
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from None
# A transaction left open by a process that stopped without closing its connection holds its
# row locks until PostgreSQL ends the session. The keepalives end it within about two minutes
# when the peer is gone (a worker host that lost power or its network); the idle timeout, after
# this many seconds (0: never), also when the host is up but the process hangs. It is longer
# than any pause inside one of the application's transactions (the longest is a chunk of
# contacts written to LDAP).
INTERORG_DB_IDLE_TRANSACTION_SECONDS = envint(
    "INTERORG_DB_IDLE_TRANSACTION_SECONDS", 600, minimum=0
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # PGOPTIONS, which libpq no longer reads once `options` is given, comes last and wins.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={INTERORG_DB_IDLE_TRANSACTION_SECONDS}s "
        "-c tcp_keepalives_idle=60 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=6 "
        + os.environ.get("PGOPTIONS", "")
    ).strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers wait for the database lock instead of failing at once; IMMEDIATE transactions take
    # the write lock at BEGIN, which serializes USN allocation with commit on SQLite.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

LOGIN_URL = "admin:login"

# Production serves the console over HTTPS only, from behind a proxy that terminates TLS and
# sets SECURE_PROXY_SSL_HEADER (X-Forwarded-Proto in docker-compose.yml): secure cookies, HSTS,
# and plain HTTP redirected, except /healthz (the container's own health check asks over HTTP).
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", INTERORG_PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", INTERORG_PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = hardening.proxy_ssl_header(envstr("SECURE_PROXY_SSL_HEADER", ""))
SECURE_HSTS_SECONDS = envint(
    "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if INTERORG_PRODUCTION else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", INTERORG_PRODUCTION)
# Preloading is a promise made for the whole domain, to every browser, and slow to take back:
# an operator opts in (then submits the domain); the deployment check's reminder stays quiet.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# Largest message part (bytes) the master and requestors accept from the wire, whatever the sender
# claims; and the most a gzip payload may expand to when decoded.
MIB = 1024 * 1024
INTERORG_MAX_INBOUND_MESSAGE = envint("INTERORG_MAX_INBOUND_MESSAGE", 25 * MIB, minimum=1024)
INTERORG_MAX_DECODED_PAYLOAD = envint("INTERORG_MAX_DECODED_PAYLOAD", 200 * MIB, minimum=1024)
# The most changes or entries one part may hold: a larger part is refused as it is read, before
# its items take memory. Senders put at most 50,000 in a part (transport.wire.MAX_ITEMS_PER_PART).
INTERORG_MAX_ENTRIES_PER_PART = envint("INTERORG_MAX_ENTRIES_PER_PART", 100_000, minimum=50_000)

# --- Celery -------------------------------------------------------------------------------------
# The embedded default is Celery's filesystem broker under var/ (no server to install); production
# sets CELERY_BROKER_URL=redis://host:6379/0.
# ("localhost" means nothing to the filesystem transport; without it kombu warns at every connect.)
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://localhost/")
# Exchanges whose binding tables kombu's filesystem transport keeps in control/<name>.exchange.
FILESYSTEM_BROKER_EXCHANGES = ("celery", "celery.pidbox", "reply.celery.pidbox", "celeryev")


def prepare_filesystem_broker(folder: Path) -> None:
    """Create the broker's folders, and its exchange tables empty. kombu creates a missing table
    by truncating it before it takes the lock, so two processes binding at once (a worker and
    Flower starting together) can leave it corrupt for good; an existing one it updates under
    the lock. Each table appears whole or not at all (written aside, then linked into place)."""
    for name in ("queue", "control", "processed"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    for exchange in FILESYSTEM_BROKER_EXCHANGES:
        table = folder / "control" / f"{exchange}.exchange"
        if table.exists():
            continue
        draft = table.with_name(f".{table.name}.{os.getpid()}")
        draft.write_text("[]")
        try:
            os.link(draft, table)
        except FileExistsError:
            pass  # another process was first; its table stands
        finally:
            draft.unlink()


# A broker that is down or does not answer fails a publish within seconds (Execute Now answers
# 503) instead of holding the request: a connect timeout, one retry (a pooled connection the
# broker dropped), and for Redis a socket timeout (kombu's default waits forever on a server
# that accepts and never answers).
INTERORG_BROKER_TIMEOUT = envint("INTERORG_BROKER_TIMEOUT", 3, minimum=2)
CELERY_BROKER_CONNECTION_TIMEOUT = INTERORG_BROKER_TIMEOUT
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}


def broker_transport_options(url: str) -> dict:
    """The transport options of a network broker at `url` (the filesystem broker's are below)."""
    if url.startswith(("redis://", "rediss://", "redis+socket://")):
        # Above the 1 s a worker's BRPOP blocks, so a consumer is never cut off mid-wait.
        return {
            "socket_connect_timeout": INTERORG_BROKER_TIMEOUT,
            "socket_timeout": INTERORG_BROKER_TIMEOUT,
        }
    return {}


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = Path(envstr("INTERORG_BROKER_DIR", str(VAR_DIR / "broker")))
    prepare_filesystem_broker(BROKER_DIR)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
# The queue tasks go to and workers take them from: installations (or benchmarks) sharing one
# broker keep apart by giving each its own.
CELERY_TASK_DEFAULT_QUEUE = envstr("INTERORG_TASK_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task lost with its worker (SIGKILL, OOM) goes back to the queue; tasks are idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# "Celery workers are running": send a task when a message is queued or received, so workers
# deliver and process at once, and let console buttons queue cycles. `make run` and
# docker-compose turn it on. Off (a lone `runserver`, the commands, the tests), the work happens
# in the process that asked for it (the sync commands pump the outbox and inbox themselves).
INTERORG_DISPATCH_TASKS = envbool("INTERORG_DISPATCH_TASKS", False)


def _cron(name: str, default: str) -> crontab | None:
    """A crontab from a five-field expression in the environment; "disable" turns it off."""
    raw = envstr(name, default).strip()
    if raw.lower() == "disable":
        return None
    fields = raw.split()
    if len(fields) != 5:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a cron expression: give five fields such as '30 3 * * *' "
            "(minute hour day-of-month month day-of-week), or 'disable'."
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute, hour, day_of_week, day_of_month, month_of_year)
    except (ValueError, ParseException) as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a cron expression: {exc}") from None


# Housekeeping, registered in code; django-celery-beat's DatabaseScheduler copies these entries
# into its tables when beat starts. `expires` stays under each interval, so a backlog left while
# no worker ran is dropped instead of running many times over.
INTERORG_ARCHIVE_RETENTION_DAYS = envint("INTERORG_ARCHIVE_RETENTION_DAYS", 90, minimum=1)
INTERORG_TOMBSTONE_RETENTION_DAYS = envint("INTERORG_TOMBSTONE_RETENTION_DAYS", 60, minimum=1)
# How long each organization's import history is kept whole (the history of an entry, the
# address book as of a time); older, only each entry's latest state (requestor.housekeeping).
INTERORG_HISTORY_RETENTION_DAYS = envint("INTERORG_HISTORY_RETENTION_DAYS", 90, minimum=1)
INTERORG_STALLED_RUN_MINUTES = envint("INTERORG_STALLED_RUN_MINUTES", 60, minimum=1)
# A run Execute Now queued that no worker started within this many minutes (its task lost with
# the broker's queue, or no worker running) is closed as failed (requestor.housekeeping).
INTERORG_QUEUED_RUN_MINUTES = envint("INTERORG_QUEUED_RUN_MINUTES", 15, minimum=1)
INTERORG_SWEEP_SECONDS = envint("INTERORG_SWEEP_SECONDS", 60, minimum=5)
# Alert e-mails (console/alerts.py): how often states are compared with the last alerted one,
# and how long a new state must last before its alert goes out (a run failing once between
# two good ones mails nobody; 0 alerts at the first check that sees it).
INTERORG_ALERT_CHECK_SECONDS = envint("INTERORG_ALERT_CHECK_SECONDS", 60, minimum=10)
INTERORG_ALERT_HOLD_DOWN_MINUTES = envint("INTERORG_ALERT_HOLD_DOWN_MINUTES", 5, minimum=0)
_housekeeping = _cron("INTERORG_HOUSEKEEPING_CRON", "30 3 * * *")
CELERY_BEAT_SCHEDULE = {
    "interorg: deliver and process messages left behind": {
        "task": "transport.tasks.sweep_messages",
        "schedule": float(INTERORG_SWEEP_SECONDS),
        "options": {"expires": INTERORG_SWEEP_SECONDS * 0.9},
    },
    "interorg: mark stalled requestor runs failed": {
        "task": "requestor.tasks.fail_stalled_runs",
        "schedule": 300.0,
        "options": {"expires": 270},
    },
    "interorg: remove contacts past their grace period": {
        "task": "requestor.tasks.end_grace_periods",
        "schedule": 3600.0,
        "options": {"expires": 3300},
    },
    "interorg: alert administrators of state changes": {
        "task": "console.tasks.check_alerts",
        "schedule": float(INTERORG_ALERT_CHECK_SECONDS),
        "options": {"expires": INTERORG_ALERT_CHECK_SECONDS * 0.9},
    },
}
if _housekeeping is not None:
    for _name, _task in (
        ("purge master tombstones", "master.tasks.purge_tombstones"),
        ("forget old export batches", "master.tasks.purge_received_batches"),
        ("compact the master's ledger", "master.tasks.compact_ledger"),
        ("purge acknowledged directory tombstones", "requestor.tasks.purge_directory_tombstones"),
        ("purge old runs", "requestor.tasks.purge_runs"),
        ("compact the import history", "requestor.tasks.compact_imported_changes"),
        ("purge the message archive", "transport.tasks.purge_archive"),
    ):
        CELERY_BEAT_SCHEDULE[f"interorg: {_name}"] = {
            "task": _task,
            "schedule": _housekeeping,
            "options": {"expires": 3600},
        }

# --- Mail ---------------------------------------------------------------------------------------
# Outbound: Django's SMTP backend towards the relay. Inbound: `manage.py run_smtpd` listens on
# INTERORG_SMTPD_HOST:INTERORG_SMTPD_PORT (loopback by default).
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = envint("EMAIL_PORT", 2525, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL, not both.")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30, minimum=1)
# The sender of alert e-mails, and the console's address their links point to (by default
# the address `make run` serves it on).
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "interorg-sync@localhost")
INTERORG_CONSOLE_URL = envstr(
    "INTERORG_CONSOLE_URL", f"http://{envstr('INTERORG_WEB_ADDRESS', '127.0.0.1:8000')}"
).rstrip("/")
if not INTERORG_CONSOLE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"INTERORG_CONSOLE_URL={INTERORG_CONSOLE_URL!r} is not a web address: give one such as "
        "https://interorg.example.com (the console's address as administrators reach it)."
    )
INTERORG_SMTPD_HOST = envstr("INTERORG_SMTPD_HOST", "127.0.0.1")
INTERORG_SMTPD_PORT = envint("INTERORG_SMTPD_PORT", 2525, minimum=1)
# What the SMTP receiver lets in (transport.smtp, transport.limits): beyond a limit it answers
# 4xx and a well-behaved relay tries again later. Counted over the last hour by one receiver.
GIB = 1024 * MIB
INTERORG_SMTPD_MAX_CONNECTIONS = envint("INTERORG_SMTPD_MAX_CONNECTIONS", 20, minimum=1)
INTERORG_SMTPD_SENDER_MESSAGES_PER_HOUR = envint(
    "INTERORG_SMTPD_SENDER_MESSAGES_PER_HOUR", 600, minimum=1
)
INTERORG_SMTPD_SENDER_BYTES_PER_HOUR = envint(
    "INTERORG_SMTPD_SENDER_BYTES_PER_HOUR", 2 * GIB, minimum=MIB
)
INTERORG_SMTPD_MESSAGES_PER_HOUR = envint("INTERORG_SMTPD_MESSAGES_PER_HOUR", 3000, minimum=1)
INTERORG_SMTPD_BYTES_PER_HOUR = envint("INTERORG_SMTPD_BYTES_PER_HOUR", 8 * GIB, minimum=MIB)
# Mail from senders that are not allowed agents, all such senders together.
INTERORG_SMTPD_UNKNOWN_SENDER_MESSAGES_PER_HOUR = envint(
    "INTERORG_SMTPD_UNKNOWN_SENDER_MESSAGES_PER_HOUR", 60, minimum=0
)
# STARTTLS with this certificate chain and key (PEM files); required of every client unless
# INTERORG_SMTPD_REQUIRE_STARTTLS=false. AUTH (PLAIN/LOGIN, only after STARTTLS) with this
# user and password, required of every client when set.
INTERORG_SMTPD_TLS_CERT_FILE = envstr("INTERORG_SMTPD_TLS_CERT_FILE", "")
INTERORG_SMTPD_TLS_KEY_FILE = envstr("INTERORG_SMTPD_TLS_KEY_FILE", "")
if bool(INTERORG_SMTPD_TLS_CERT_FILE) != bool(INTERORG_SMTPD_TLS_KEY_FILE):
    raise ImproperlyConfigured(
        "Set both INTERORG_SMTPD_TLS_CERT_FILE and INTERORG_SMTPD_TLS_KEY_FILE, or neither."
    )
INTERORG_SMTPD_REQUIRE_STARTTLS = envbool(
    "INTERORG_SMTPD_REQUIRE_STARTTLS", bool(INTERORG_SMTPD_TLS_CERT_FILE)
)
INTERORG_SMTPD_AUTH_USER = envstr("INTERORG_SMTPD_AUTH_USER", "")
INTERORG_SMTPD_AUTH_PASSWORD = envstr("INTERORG_SMTPD_AUTH_PASSWORD", "")
if INTERORG_SMTPD_AUTH_USER and not (INTERORG_SMTPD_AUTH_PASSWORD and INTERORG_SMTPD_TLS_CERT_FILE):
    raise ImproperlyConfigured(
        "INTERORG_SMTPD_AUTH_USER needs INTERORG_SMTPD_AUTH_PASSWORD, and a certificate "
        "(INTERORG_SMTPD_TLS_CERT_FILE/KEY_FILE): the password is only taken after STARTTLS."
    )
# The stored bodies of inbound messages: past INTERORG_ARCHIVE_MAX_BYTES the receiver answers
# 452 until the archive is purged; from INTERORG_ARCHIVE_ALERT_PERCENT of it on, an alert.
INTERORG_ARCHIVE_MAX_BYTES = envint("INTERORG_ARCHIVE_MAX_BYTES", 20 * GIB, minimum=MIB)
INTERORG_ARCHIVE_ALERT_PERCENT = envint("INTERORG_ARCHIVE_ALERT_PERCENT", 80, minimum=1)
if INTERORG_ARCHIVE_ALERT_PERCENT > 100:
    raise ImproperlyConfigured(
        f"INTERORG_ARCHIVE_ALERT_PERCENT={INTERORG_ARCHIVE_ALERT_PERCENT} is over 100."
    )
# Mail rejected before its signature was verified (a sender that is not an allowed agent, a
# broken or unsigned mail, a bad signature) is kept by its headers, size, SHA-256 digest and
# reason. Its body only when this is on: at most _MAX bytes of such bodies at once, each for
# _DAYS days (then the body goes, the record stays).
INTERORG_KEEP_REJECTED_BODIES = envbool("INTERORG_KEEP_REJECTED_BODIES", False)
INTERORG_KEEP_REJECTED_BODIES_MAX = envint(
    "INTERORG_KEEP_REJECTED_BODIES_MAX", 100 * MIB, minimum=0
)
INTERORG_KEEP_REJECTED_BODIES_DAYS = envint("INTERORG_KEEP_REJECTED_BODIES_DAYS", 7, minimum=1)
# The CA certificates (PEM file) `poll_imap` trusts instead of the system's (--ca-file).
INTERORG_IMAP_CA_FILE = envstr("INTERORG_IMAP_CA_FILE", "")

# A message written this long ago (by the clock its sequence follows), or this far behind the
# newest accepted from its sender, is stale. Mail may also sit in a queue for as long as a relay
# keeps retrying it (Postfix's maximal_queue_lifetime: 5 days by default). Accepted messages stay
# in the archive, and master tombstones at the master, at least as long as both together: a
# replay of a purged message would be taken for new, and a delayed export could bring back an
# entry whose tombstone is gone.
INTERORG_REPLAY_WINDOW_SECONDS = envint("INTERORG_REPLAY_WINDOW_SECONDS", 7 * 24 * 3600, minimum=60)
INTERORG_MAIL_QUEUE_LIFETIME_SECONDS = envint(
    "INTERORG_MAIL_QUEUE_LIFETIME_SECONDS", 5 * 24 * 3600, minimum=0
)
INTERORG_REPLAY_HORIZON_SECONDS = (
    INTERORG_REPLAY_WINDOW_SECONDS + INTERORG_MAIL_QUEUE_LIFETIME_SECONDS
)
if INTERORG_ARCHIVE_RETENTION_DAYS * 24 * 3600 < INTERORG_REPLAY_HORIZON_SECONDS:
    _days = -(-INTERORG_REPLAY_HORIZON_SECONDS // (24 * 3600))
    raise ImproperlyConfigured(
        f"INTERORG_ARCHIVE_RETENTION_DAYS={INTERORG_ARCHIVE_RETENTION_DAYS} would purge accepted "
        "messages before the replay window plus a mail queue's lifetime "
        f"({INTERORG_REPLAY_WINDOW_SECONDS} s + {INTERORG_MAIL_QUEUE_LIFETIME_SECONDS} s), and a "
        f"replay of one would be taken for new: set it to at least {_days}, or lower "
        "INTERORG_REPLAY_WINDOW_SECONDS or INTERORG_MAIL_QUEUE_LIFETIME_SECONDS."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # django-axes says INFO at every login; its warnings (each failure, each lockout) stay.
    "loggers": {"axes": {"level": "WARNING"}},
}

# --- Console and JSON API -----------------------------------------------------------------------
# Every console page needs a login (console/urls.py wraps them all); the API authenticates
# scripts by token and the console by session (with CSRF); /healthz answers anyone.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:dashboard"
LOGOUT_REDIRECT_URL = "login"
# Failed logins (console and admin; the API takes tokens, never a password) are counted per user
# and per address by django-axes: after INTERORG_LOGIN_FAILURE_LIMIT failures that user, and that
# address, are refused for INTERORG_LOGIN_COOLOFF_MINUTES after the latest attempt, even with
# the right password. Attempts are kept in the database (admin: Axes); `manage.py
# axes_reset_username NAME`, `axes_reset_ip ADDRESS` or `axes_reset` unlock at once. Behind
# INTERORG_LOGIN_PROXY_COUNT reverse proxies the address is taken from X-Forwarded-For.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = envbool("INTERORG_LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = envint("INTERORG_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("INTERORG_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_LOCKOUT_CALLABLE = "interorg_site.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "interorg_site.login_throttle.client_address"
AXES_USERNAME_CALLABLE = "interorg_site.login_throttle.client_username"
AXES_VERBOSE = False
INTERORG_LOGIN_PROXY_COUNT = envint("INTERORG_LOGIN_PROXY_COUNT", 0, minimum=0)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "console.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's parsers, refusing NUL characters and JSON nested too deep with 400.
    "DEFAULT_PARSER_CLASSES": [
        "console.api.parsers.JSONParser",
        "console.api.parsers.FormParser",
        "console.api.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# The deepest JSON the API decodes (its requests are a level or two deep); deeper is a 400.
INTERORG_MAX_JSON_DEPTH = envint("INTERORG_MAX_JSON_DEPTH", 32, minimum=4)
SPECTACULAR_SETTINGS = {
    "TITLE": "InterOrg Sync API",
    "DESCRIPTION": "Status, directory, runs, messages and configuration of the organizations "
    "you hold a role in; actions Execute Now, Import All and Export All.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Messages and holds share their kinds: one enum, named, not a hash-suffixed collision.
    "ENUM_NAME_OVERRIDES": {"MessageKindEnum": "transport.constants.MessageKind"},
}
# Django serves the console's few static files itself (the embedded default has no web server in
# front); set false when a proxy serves STATIC_ROOT after `manage.py collectstatic`.
INTERORG_SERVE_STATIC = envbool("INTERORG_SERVE_STATIC", True)
# How long /healthz waits for the broker before reporting it down.
INTERORG_HEALTHZ_BROKER_TIMEOUT = envint("INTERORG_HEALTHZ_BROKER_TIMEOUT", 2, minimum=1)
