# syntax=docker/dockerfile:1
#
# The broker as an image: `broker serve` (gunicorn, plain HTTP on 8080) behind a TLS-terminating proxy.
# The configuration directory is mounted at /etc/broker (read-only is fine); the audit trail goes to
# /var/lib/broker/audit unless broker.yaml says otherwise. docs/deployment.md has the whole stack.
#
#   docker build -t broker .
#   docker run --rm -v "$PWD/config:/etc/broker:ro" -v broker-audit:/var/lib/broker/audit -p 8080:8080 broker
#
# No compiler and no system library is installed in either stage: lxml, xmlsec (libxmlsec1, libxml2 and
# OpenSSL linked in) and cryptography come as manylinux wheels, and pip is told to take nothing else
# (--only-binary), so a platform without those wheels fails the build instead of compiling something the
# final image could not load. The product signs and decrypts in process (python-xmlsec); the xmlsec1
# program serves only the demo's pysaml2 peers and is not in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the broker's wheel, then a virtual environment from wheels only ---------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY deploy/constraints.txt ./deploy/constraints.txt

RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/broker \
 && /opt/broker/bin/pip install --only-binary=:all: --constraint deploy/constraints.txt /wheels/broker-*.whl \
 && /opt/broker/bin/pip check

# --- runtime ------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="broker" \
      org.opencontainers.image.description="Federated authentication broker: municipal X.509 and SAML logins toward regional SAML service providers" \
      org.opencontainers.image.licenses="Apache-2.0"

# an unprivileged user of its own; the audit directory belongs to it (a new named volume inherits that). Its parent
# lets any user pass: compose runs the replicas as the owner of the keys (BROKER_UID), who must reach the audit
# directory mounted below it
RUN groupadd --system --gid 10001 broker \
 && useradd --system --uid 10001 --gid broker --home-dir /var/lib/broker --no-create-home \
            --shell /usr/sbin/nologin broker \
 && install -d -o broker -g broker -m 0755 /var/lib/broker \
 && install -d -o broker -g broker -m 0750 /var/lib/broker/audit \
 && install -d -m 0755 /etc/broker

COPY --from=build /opt/broker /opt/broker

ENV PATH=/opt/broker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# the C extensions load with what their wheels brought (xmlsec also checks that its libxml2 is lxml's)
RUN python -c "import lxml.etree, xmlsec, cryptography.x509, broker.app" \
 && broker serve --help > /dev/null

USER broker:broker
WORKDIR /var/lib/broker
VOLUME ["/var/lib/broker/audit"]
EXPOSE 8080

# liveness of the process (Redis is /readyz's business: a replica without Redis answers 503 there, and the
# proxy should send its users elsewhere, but restarting it would not bring Redis back)
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# gunicorn's master is PID 1 (exec form): SIGHUP reloads the configuration, SIGTERM stops gracefully.
# Workers and threads come from broker.yaml's server section unless given after the image name.
ENTRYPOINT ["broker", "serve", "--config", "/etc/broker"]
CMD ["--bind", "0.0.0.0:8080", "--pid-file", "/tmp/broker.pid"]
