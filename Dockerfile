# The ucmha image: API (gunicorn), Celery worker and beat, `ucmha` CLI, and the demo simulator.
# Dependencies are installed at the versions the test suite ran with (constraints.txt).
# BASE_IMAGE: any image with Python 3.11 whose `python` and `pip` (on PATH) may install into their
# environment (a virtualenv or the image's own Python). The test suite builds from a Debian base made
# of Debian's packages (tests/deploy/podman.py), as no image registry is reachable there.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
# The dependencies first, in a layer of their own: a change of the sources alone does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md alembic.ini gunicorn.conf.py ./
COPY service ./service
COPY workers ./workers
COPY simulator ./simulator
COPY migrations ./migrations
# Byte-compiled at build time: the containers run with a read-only root file system.
RUN pip install --no-deps -c constraints.txt -e . \
    && python -m compileall -q service workers simulator migrations gunicorn.conf.py \
    && useradd --system --no-create-home --shell /usr/sbin/nologin ucmha
USER ucmha
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "service.wsgi:create_app()"]
