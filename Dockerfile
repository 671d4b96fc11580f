# InterOrg Sync: one image for every process of docker-compose.yml (web, worker, beat, smtpd,
# flower), which picks the command. Configuration comes from the environment at run time: this
# image holds no secret (see .env.example).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=interorg_site.settings \
    INTERORG_VAR_DIR=/var/lib/interorg \
    INTERORG_PRODUCTION=true

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin interorg \
    && install -d -o interorg -g interorg /var/lib/interorg

WORKDIR /app
COPY . .
# python-ldap (LDAP directories) builds against OpenLDAP's and SASL's headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libldap2-dev libsasl2-dev \
    && pip install ".[ldap]" \
    && apt-get purge -y --auto-remove gcc \
    && rm -rf /var/lib/apt/lists/* \
    # Static files for the console; the key only lets settings load, it signs nothing (and,
    # out of production mode for this one command, needs no strength).
    && INTERORG_PRODUCTION=false SECRET_KEY=collectstatic-only \
       python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R interorg:interorg /var/lib/interorg

USER interorg
EXPOSE 8000 2525 5555
CMD ["gunicorn", "interorg_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--access-logfile", "-"]
